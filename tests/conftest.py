"""Shared fixtures: tiny synthetic datasets in memory and on disk, one torch thread, MLflow
stores whose tables exist already."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow_tables import copy_mlflow_tables, make_mlflow_tables  # noqa: E402
from synthetic import make_cifar_data  # noqa: E402

from cifar_hpo.data import cache_path, save_cache  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny batches run faster (and more predictably on a shared 2-core box) on one thread.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def mlflow_tables(tmp_path_factory) -> Path | None:
    """An empty MLflow SQLite store with every table made, or None if it cannot be made.

    Making MLflow's tables (its alembic migrations) takes 1-3 s per store, more than most
    tests; a copy of this file (:func:`copy_mlflow_tables`) takes milliseconds. It holds no
    experiment: MLflow adds ``Default`` on first use with the artifact root of that moment, as in
    a new store.
    """
    return make_mlflow_tables(tmp_path_factory.mktemp("mlflow-tables") / "mlflow.db")


@pytest.fixture(autouse=True)
def _mlflow_store_in_tmp(request, tmp_path, monkeypatch):
    """Every test's MLflow writes go to its own temporary store (never the working folder's
    ``mlflow.db``); fixtures that want MLflow's default store delete the variable again. The
    store sits beside ``tmp_path`` (tests may check what ``tmp_path`` holds), its tables made
    once a test session has imported MLflow."""
    store = tmp_path.parent / f"{tmp_path.name}-mlruns.db"
    if "mlflow" in sys.modules:  # a session that never imports MLflow need not pay for it
        copy_mlflow_tables(request.getfixturevalue("mlflow_tables"), store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")


@pytest.fixture(scope="session")
def tiny_data():
    """Synthetic CIFAR-10: 30 train / 10 test images per class, learnable colour classes."""
    return make_cifar_data("cifar10", n_train_per_class=30, n_test_per_class=10, seed=0)


@pytest.fixture
def data_dir(tmp_path, tiny_data, monkeypatch):
    """A data folder holding the tiny dataset's cache; also set as CIFAR_HPO_DATA_DIR."""
    folder = tmp_path / "data"
    save_cache(tiny_data, cache_path(folder, "cifar10"))
    monkeypatch.setenv("CIFAR_HPO_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def project(tmp_path, data_dir, monkeypatch, mlflow_tables):
    """A project folder with sweeps/, default MLflow (sqlite:///mlflow.db, its tables made) and
    Optuna stores."""
    copy_mlflow_tables(mlflow_tables, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "sweeps").mkdir()
    return tmp_path
