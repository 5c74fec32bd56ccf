"""MLflow records as users open them: experiment kind, and logged models without inference."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from helpers import tiny_config
from mlflow.tracking import MlflowClient

from cifar_hpo.engine import train
from cifar_hpo.tracking import Tracker


def test_experiments_open_in_the_model_training_view(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    client = MlflowClient(uri)
    exp_id = tracker.experiment_id("cifar-hpo/new")
    kind = client.get_experiment(exp_id).tags.get("mlflow.experimentKind")
    assert kind == "custom_model_development"
    old_id = client.create_experiment("cifar-hpo/old")  # made before the tag existed
    assert "mlflow.experimentKind" not in client.get_experiment(old_id).tags
    assert tracker.experiment_id("cifar-hpo/old") == old_id
    kind = client.get_experiment(old_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"


def test_logged_model_pins_torch_without_inferring_requirements(tmp_path, tiny_data, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    tracker = Tracker(uri)
    exp_id = tracker.experiment_id("cifar-hpo/models")
    config = tiny_config(epochs=1, **{"model.name": "seed001_cnn"})
    result = train(config, tiny_data)
    run = tracker.client.create_run(exp_id)
    from cifar_hpo.tracking import TrialRun

    def no_inference(*args, **kwargs):
        raise AssertionError("pip requirements were inferred")

    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", no_inference)
    model_id = TrialRun(tracker, run.info.run_id).log_model(result, tiny_data.mean, tiny_data.std)
    location = tracker.client.get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(f"{location}/requirements.txt", tracking_uri=uri)
    requirements = Path(local).read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    # an MLflow 3 LoggedModel: linked to its run (the Models tab) and loadable by its id
    model = tracker.client.get_logged_model(model_id)
    assert model.source_run_id == run.info.run_id and model.name == "model"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
    x = torch.rand(2, 3, 32, 32)
    assert loaded(x).shape == (2, 10)


def test_trial_params_include_model_defaults(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = tiny_config(**{"model.name": "airbench94", "model.width": 0.5})
    parent = tracker.client.create_run(tracker.experiment_id("cifar-hpo/p")).info.run_id
    run = tracker.start_trial("p", parent, 0, config)
    params = tracker.client.get_run(run.run_id).data.params
    assert params["model.width"] == "0.5"  # set
    assert params["model.whiten_bias_epochs"] == "3"  # defaults, resolved
    assert params["model.bn_momentum"] == "0.6"
    assert params["optim.decoupled"] == "False" and params["tta"] == "0"


def test_dataset_is_logged_as_an_mlflow_input(tmp_path, tiny_data):
    from cifar_hpo.tracking import TrialRun

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracker.client.create_run(tracker.experiment_id("cifar-hpo/d")).info.run_id
    TrialRun(tracker, run_id).log_dataset(tiny_data, 270, 30)
    (entry,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert entry.dataset.name == "cifar10"
    assert entry.dataset.digest == tiny_data.checksum[:36]
    tags = {t.key: t.value for t in entry.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["cifar_hpo.checksum"] == tiny_data.checksum
    assert (tags["cifar_hpo.train_images"], tags["cifar_hpo.val_images"]) == ("270", "30")
    assert tags["cifar_hpo.test_images"] == str(len(tiny_data.test_labels))


def test_a_dataset_row_raced_by_another_worker_is_linked_not_failed(tmp_path, tiny_data):
    """Three workers starting together: the store refuses all but one insert of the shared
    dataset row on its unique key (seen as a failed trial with a sqlite IntegrityError relayed by
    an MLflow server). The losing run logs again and links the row; other errors still raise."""
    from mlflow.exceptions import MlflowException, RestException

    from cifar_hpo.tracking import TrialRun

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracker.client.create_run(tracker.experiment_id("cifar-hpo/r")).info.run_id
    trial = TrialRun(tracker, run_id)
    real, calls = tracker.client.log_inputs, []

    def racing(run, inputs):  # another worker inserts the row between our check and insert
        calls.append(run)
        if len(calls) == 1:
            real(
                tracker.client.create_run(tracker.experiment_id("cifar-hpo/r")).info.run_id, inputs
            )
            raise RestException(
                {"error_code": "BAD_REQUEST", "message": "(sqlite3.IntegrityError) UNIQUE "
                 "constraint failed: datasets.experiment_id, datasets.name, datasets.digest"}
            )  # fmt: skip
        real(run, inputs)

    trial.client.log_inputs = racing
    trial.log_dataset(tiny_data, 270, 30)
    assert calls == [run_id, run_id]
    (entry,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert entry.dataset.digest == tiny_data.checksum[:36]

    def refused(run, inputs):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run gone")

    trial.client.log_inputs = refused
    with pytest.raises(MlflowException, match="run gone"):
        trial.log_dataset(tiny_data, 270, 30)


def test_trial_runs_carry_provenance_tags(tmp_path):
    import subprocess
    from pathlib import Path

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracker.client.create_run(tracker.experiment_id("cifar-hpo/t")).info.run_id
    run = tracker.start_trial("t", parent, 0, tiny_config(seed=7))
    tags = tracker.client.get_run(run.run_id).data.tags
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if head:  # a git checkout (CI's is one)
        assert tags["mlflow.source.git.commit"] == head
        assert tags["cifar_hpo.git_dirty"] in ("true", "false")
    assert tags["mlflow.source.name"] == "cifar-hpo"
    assert tags["cifar_hpo.seed"] == "7" and tags["cifar_hpo.device"] == "cpu"
    assert tags["cifar_hpo.precision"] == "fp32"  # tiny_config: amp off
    assert tags["cifar_hpo.versions"].startswith("torch ")
    assert tags["cifar_hpo.cpu_features"] and "cores" in tags["cifar_hpo.host"]
