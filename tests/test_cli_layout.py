"""The CLI package's shape: short modules and functions, every table in ``cli/render.py``, and
every command registered on ``app``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cifar_hpo.cli import app, data_app

CLI = Path(__file__).resolve().parents[1] / "cifar_hpo" / "cli"
MODULES = sorted(CLI.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_and_functions_fit_on_a_few_screens(path):
    source = path.read_text()
    assert len(source.splitlines()) < 500
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 100
    ]
    assert not long, long


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "render.py"], ids=lambda p: p.name
)
def test_only_render_builds_tables_and_owns_the_console(path):
    tree = ast.parse(path.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rich")
        for alias in node.names
    }
    assert not imported & {"Table", "Panel"}, path.name
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    # boundary.py owns stderr's console; stdout's is render.console
    assert "Console" not in calls or path.name == "boundary.py", path.name


def test_every_command_is_registered():
    names = {c.name for c in app.registered_commands}
    assert names == {
        "models",
        "train",
        "lr-find",
        "sweep",
        "studies",
        "dashboard",
        "best",
        "compare",
        "predict",
        "reproduce",
    }
    assert {c.name for c in data_app.registered_commands} == {"import", "info"}
