"""Housekeeping targets lose nothing by surprise; the PostgreSQL driver is an install extra."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = [
    "studies/optuna.db",
    "studies/keep.log",
    "mlflow.db",
    "mlruns/1/a/meta.yaml",
    "mlruns/models/m/meta.yaml",
    "runs/r1/config.yaml",
    "model.pt",
]
CACHES = [".venv/bin/python", ".pytest_cache/v", ".ruff_cache/x", "cifar_hpo/__pycache__/a.pyc"]


def _tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for rel in STATE + CACHES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    return tmp_path


def _make(folder: Path, target: str) -> None:
    subprocess.run(["make", "-C", str(folder), target], check=True, capture_output=True)


def test_make_clean_keeps_studies_runs_and_models(tmp_path):
    folder = _tree(tmp_path)
    _make(folder, "clean")
    assert all((folder / rel).exists() for rel in STATE)
    assert not any((folder / rel).exists() for rel in CACHES)


def test_the_deleting_target_says_what_it_deletes(tmp_path):
    folder = _tree(tmp_path)
    _make(folder, "delete-studies-and-mlflow-runs")
    assert not any((folder / rel).exists() for rel in STATE)
    assert (folder / ".venv/bin/python").exists()


def test_postgres_driver_is_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(
        d.startswith("psycopg2-binary") for d in project["optional-dependencies"]["postgres"]
    )
