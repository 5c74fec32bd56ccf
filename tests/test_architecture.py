"""The package's shape: no import cycles, imports that run one way
(cli -> sweep -> tracking -> core -> models/data/config), counting every import statement,
function-local and type-checking ones included (read from the source, not from a run); every
user attribute key in the study record; no function over 100 lines, no module over 500; every
MLflow call inside ``cifar_hpo.tracking``, bench scripts included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_hpo"

#: layer of each module prefix; a module may import only modules of its own layer or below.
#: ``reproduce`` sits beside ``sweep`` (it reads a study's best trial through ``sweep.best``).
LAYERS = [
    ("cifar_hpo.cli", 5),
    ("cifar_hpo.reproduce", 4),
    ("cifar_hpo.sweep", 4),
    ("cifar_hpo.tracking", 3),
    ("cifar_hpo", 2),  # the training core and its helpers
    ("cifar_hpo.models", 1),
    ("cifar_hpo.data", 1),
    ("cifar_hpo.config", 1),
    ("cifar_hpo.reports", 1),  # README blocks and cell formatters: stdlib and errors only
    ("cifar_hpo.errors", 0),
    ("cifar_hpo.record", 0),  # the study record: keys and typed readers, imports nothing
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its source."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)  # (a module importing its own package is fine)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer(module: str) -> int:
    matches = [
        (len(prefix), rank)
        for prefix, rank in LAYERS
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_graph_reader_sees_local_and_type_checking_imports(tmp_path):
    graph = import_graph()
    assert "cifar_hpo.engine" in graph["cifar_hpo.sweep.objective"]
    assert "cifar_hpo.progress" in graph["cifar_hpo.sweep.objective"]  # imported in a method
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_cifar_hpo():
    assert find_cycle(import_graph()) is None


def test_imports_run_one_way():
    wrong = sorted(
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert not wrong, wrong


# ----------------------------------------------------------------------------- study record
USER_ATTR_CALLS = {"set_user_attr", "get"}


def _user_attr_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) of every string literal used as an Optuna user-attribute key:
    ``x.set_user_attr("k", ...)``, ``x.user_attrs.get("k")``, ``x.user_attrs["k"]``."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            func = node.func
            on_attrs = isinstance(func.value, ast.Attribute) and func.value.attr == "user_attrs"
            if func.attr == "set_user_attr" or (func.attr == "get" and on_attrs):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "user_attrs":
                key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.append((node.lineno, key.value))
    return found


def test_key_reader_finds_literal_keys():
    tree = ast.parse(
        "t.set_user_attr('a', 1)\nt.user_attrs.get('b')\nt.user_attrs['c']\n"
        "t.set_user_attr(KEY, 1)\nd.get('not_an_attr')\n"
    )
    assert [k for _, k in _user_attr_keys(tree)] == ["a", "b", "c"]


def test_every_user_attribute_key_is_defined_in_the_study_record():
    from cifar_hpo import record

    keys = {v for k, v in vars(record).items() if k.endswith("_ATTR")}
    literal, defined_elsewhere = [], []
    for name, path in module_names().items():
        if name == "cifar_hpo.record":
            continue
        tree = ast.parse(path.read_text())
        literal += [f"{name}:{line} {key!r}" for line, key in _user_attr_keys(tree)]
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith("_ATTR"):
                        defined_elsewhere.append(f"{name}: {target.id}")
    assert not literal, literal  # use the constants of cifar_hpo.record
    assert not defined_elsewhere, defined_elsewhere
    assert len(keys) == len([k for k in vars(record) if k.endswith("_ATTR")])  # all distinct


# ----------------------------------------------------------------------------- sizes
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 500


def _long_functions(tree: ast.AST, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method, nested ones included, longer than ``limit``
    lines from its ``def`` (decorators excluded) to its last line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_function_length_reader_counts_nested_definitions():
    tree = ast.parse("def m():\n    def f():\n        return 1\n    x = 2\n    return x\n")
    assert _long_functions(tree, 4) == [("m", 5)]
    assert sorted(_long_functions(tree, 1)) == [("f", 2), ("m", 5)]


def test_no_function_in_cifar_hpo_over_the_length_limit():
    long = [
        f"{name}.{func} ({lines} lines)"
        for name, path in module_names().items()
        for func, lines in _long_functions(ast.parse(path.read_text()), MAX_FUNCTION_LINES)
    ]
    assert not long, long


def test_no_module_in_cifar_hpo_over_the_length_limit():
    long = {
        name: n
        for name, path in module_names().items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


# ----------------------------------------------------------------------------- MLflow boundary
BENCH = PACKAGE.parent / "bench"


def _mlflow_uses(tree: ast.AST) -> list[int]:
    """Lines that import MLflow or name ``mlflow`` / ``MlflowClient`` (strings do not count)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "mlflow" or a.name.startswith("mlflow.") for a in node.names):
                lines.add(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.module and (node.module == "mlflow" or node.module.startswith("mlflow.")):
                lines.add(node.lineno)
        elif isinstance(node, ast.Name) and node.id in {"mlflow", "MlflowClient"}:
            lines.add(node.lineno)
    return sorted(lines)


def test_mlflow_reader_finds_imports_and_names_but_not_strings():
    tree = ast.parse(
        "import mlflow.pytorch\nfrom mlflow import MlflowClient\nMlflowClient()\n"
        "mlflow.log_metric('a', 1)\nx = 'mlflow.log_metric'\nimport mlflowish\n"
    )
    assert _mlflow_uses(tree) == [1, 2, 3, 4]


def test_every_mlflow_call_lives_in_the_tracking_package():
    outside = [
        f"{name}:{line}"
        for name, path in module_names().items()
        if not (name == "cifar_hpo.tracking" or name.startswith("cifar_hpo.tracking."))
        for line in _mlflow_uses(ast.parse(path.read_text()))
    ]
    outside += [
        f"bench/{path.name}:{line}"
        for path in sorted(BENCH.glob("*.py"))
        for line in _mlflow_uses(ast.parse(path.read_text()))
    ]
    assert not outside, outside
