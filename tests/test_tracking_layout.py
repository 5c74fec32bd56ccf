"""The tracking package's shape: MLflow is called only from ``cifar_hpo/tracking/`` (and the
tests), its modules stay one screenful of jobs each, and its public names are re-exported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKING = ROOT / "cifar_hpo" / "tracking"


def _imports_mlflow(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
            lines.append(node.lineno)
    return lines


def test_mlflow_is_imported_only_by_the_tracking_package():
    outside = []
    for path in [*(ROOT / "cifar_hpo").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        if TRACKING in path.parents:
            continue
        for line in _imports_mlflow(ast.parse(path.read_text())):
            outside.append(f"{path.relative_to(ROOT)}:{line}")
    assert not outside, outside


def test_tracking_modules_are_short_and_their_functions_shorter():
    long_modules, long_functions = [], []
    for path in TRACKING.glob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) >= 500:
            long_modules.append(path.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > 100:
                    long_functions.append(f"{path.name}:{node.name}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_the_package_re_exports_its_public_names():
    import cifar_hpo.tracking as tracking

    missing = [name for name in tracking.__all__ if not hasattr(tracking, name)]
    assert not missing, missing
    for name in ("Tracker", "NullTracker", "TrialRun", "NullRun", "RunOutcome", "tracked_train"):
        assert name in tracking.__all__
