"""Experiments open in MLflow 3's model-training view: the kind tag, and the URL parameter
MLflow 3.17's UI picks its view from (a fresh browser profile otherwise gets GenAI "Overview")."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mlflow.tracking import MlflowClient

from cifar_hpo.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]


def _ui_screenshots():
    path = ROOT / "bench" / "ui_screenshots.py"
    spec = importlib.util.spec_from_file_location("bench_ui_screenshots", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tracker_tags_the_experiment_model_training(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, system_metrics=False).experiment_id("cifar-hpo/x")
    exp = MlflowClient(uri).get_experiment_by_name("cifar-hpo/x")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_screenshots_open_mlflow_pages_in_the_model_training_view():
    ui = _ui_screenshots()
    url = ui.mlflow_page("http://127.0.0.1:5000/#", "/experiments/3/runs")
    route = urlsplit(url).fragment  # the UI's router reads the query inside the # route
    assert route.split("?")[0] == "/experiments/3/runs"
    assert parse_qs(urlsplit(route).query) == {"workflowType": ["machine_learning"]}


def test_printed_url_opens_the_runs_table_in_the_model_training_view(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, system_metrics=False)
    url = tracker.runs_table_url("cifar-hpo/x")
    exp = MlflowClient(uri).get_experiment_by_name("cifar-hpo/x")
    route = urlsplit(url).fragment
    assert url.startswith("http://127.0.0.1:5000/#")
    assert route.split("?")[0] == f"/experiments/{exp.experiment_id}/runs"
    assert parse_qs(urlsplit(route).query) == {"workflowType": ["machine_learning"]}
