"""Shared fixtures: tiny synthetic datasets in memory and on disk, one torch thread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import make_cifar_data  # noqa: E402

from cifar_hpo.data import cache_path, save_cache  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny batches run faster (and more predictably on a shared 2-core box) on one thread.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _mlflow_store_in_tmp(tmp_path, monkeypatch):
    """Every test's MLflow writes go to its own temporary store (never the working folder's
    ``mlflow.db``); fixtures that want MLflow's default store delete the variable again."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")


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
def project(tmp_path, data_dir, monkeypatch):
    """A project folder with sweeps/, default MLflow (sqlite:///mlflow.db) and Optuna stores."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "sweeps").mkdir()
    return tmp_path
