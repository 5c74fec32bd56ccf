"""One tracked-run lifecycle (``cifar_hpo.tracking.lifecycle``): every way a run can end is
read back from MLflow as the status the run should have, and the no-op tracker records
nothing."""

from __future__ import annotations

import optuna
import pytest
from helpers import tiny_config
from mlflow.tracking import MlflowClient

from cifar_hpo.callbacks import Callback
from cifar_hpo.tracking import (
    NullRun,
    NullTracker,
    Role,
    RunOutcome,
    RunSpec,
    RunTracker,
    Tracker,
    tracked_run,
    trial_spec,
)


@pytest.fixture
def store(tmp_path):
    """(tracker, client) over a fresh sqlite store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return Tracker(uri, system_metrics=False), MlflowClient(uri)


def _only_run(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run


def test_both_trackers_implement_the_protocol(store):
    tracker, _ = store
    assert isinstance(tracker, RunTracker)
    assert isinstance(NullTracker(), RunTracker)


def test_a_run_that_completes_ends_finished_with_its_role_and_parent(store, tiny_data):
    tracker, client = store
    parent = tracker.start_run("life", "parent", {}).run_id
    config = tiny_config(epochs=1)
    spec = RunSpec(
        Role.REFIT, "life", "ok", config, tags={"k": "v"}, parent_run_id=parent, log_model=True
    )
    with tracked_run(tracker, spec) as tracked:
        tracked.log_dataset(tiny_data)
        result = tracked.train(tiny_data)
        assert tracked.record(result, tiny_data)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["cifar_hpo.role"] == "refit" and run.data.tags["k"] == "v"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["epochs"] == "1" and "test_acc" in run.data.metrics
    assert tracked.model_id and run.data.tags["cifar_hpo.model_id"] == tracked.model_id
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "cifar10"


def test_a_run_that_raises_ends_failed_with_the_reason(store, tiny_data):
    tracker, client = store
    spec = RunSpec(Role.TRAIN, "life", "boom", tiny_config(epochs=1))
    with pytest.raises(RuntimeError, match="disk on fire"):
        with tracked_run(tracker, spec):
            raise RuntimeError("disk on fire\nsecond line")
    run = _only_run(client, "life")
    assert run.info.status == "FAILED"
    assert run.data.tags["cifar_hpo.reason"] == "RuntimeError: disk on fire"


def test_a_run_that_raises_during_training_keeps_its_history(store, tiny_data):
    tracker, client = store

    def broken_after_one_epoch(config, data, callbacks, **kwargs):
        from cifar_hpo import engine

        stopper = _RaiseAt(1)
        return engine.train(config, data, [*callbacks, stopper], **kwargs)

    spec = RunSpec(Role.TRAIN, "life", "partial", tiny_config(epochs=3))
    with pytest.raises(RuntimeError, match="after epoch 1"):
        with tracked_run(tracker, spec) as tracked:
            tracked.train(tiny_data, trainer=broken_after_one_epoch)
    run = _only_run(client, "life")
    assert run.info.status == "FAILED"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.json"} <= names  # the epochs it ran are kept


def test_a_diverged_run_ends_failed_without_a_model(store, tiny_data):
    tracker, client = store
    config = tiny_config(
        epochs=3,
        **{
            "optim.lr": 1e30,
            "schedule.name": "constant",
            "optim.momentum": 0.0,
            "optim.nesterov": False,
        },
    )
    spec = RunSpec(Role.REFIT, "life", "nan", config, log_model=True)
    with tracked_run(tracker, spec) as tracked:
        result = tracked.train(tiny_data)
        assert not tracked.record(result, tiny_data)
        assert tracked.ended
    run = _only_run(client, "life")
    assert result.status == "diverged"
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["cifar_hpo.reason"]
    assert tracked.model_id is None and "cifar_hpo.model_id" not in run.data.tags


def test_ctrl_c_ends_killed_and_a_pruned_trial_killed_with_its_state(store):
    tracker, client = store
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(tracker, RunSpec(Role.TRAIN, "stop", "ctrl-c")):
            raise KeyboardInterrupt
    run = _only_run(client, "stop")
    assert run.info.status == "KILLED"
    assert run.data.tags["cifar_hpo.reason"].startswith("interrupted")

    spec = trial_spec("s", None, 4, tiny_config(), pruned=(optuna.TrialPruned,))
    with pytest.raises(optuna.TrialPruned):
        with tracked_run(tracker, spec):
            raise optuna.TrialPruned("pruned at epoch 2")
    run = _only_run(client, "cifar-hpo/s")
    assert run.info.run_name == "trial-4" and run.info.status == "KILLED"
    assert run.data.tags["optuna.state"] == "PRUNED"
    assert run.data.tags["cifar_hpo.reason"] == "pruned at epoch 2"


def test_an_ended_run_is_not_ended_again_by_the_block(store):
    tracker, client = store
    with pytest.raises(ValueError):
        with tracked_run(tracker, RunSpec(Role.RECIPE, "twice", "r")) as tracked:
            tracked.end(RunOutcome.COMPLETE, "not trained: too big")
            raise ValueError("after the end")
    run = _only_run(client, "twice")
    assert run.info.status == "FINISHED"
    assert run.data.tags["cifar_hpo.reason"] == "not trained: too big"


def test_the_no_op_tracker_records_nothing(tmp_path, tiny_data, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'untouched.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    spec = RunSpec(Role.TRAIN, "none", "n", tiny_config(epochs=1), log_model=True)
    with tracked_run(NullTracker(), spec) as tracked:
        tracked.log_dataset(tiny_data)
        result = tracked.train(tiny_data)
        assert tracked.record(result, tiny_data)
    assert isinstance(tracked.run, NullRun) and tracked.run.ended
    assert tracked.run_id is None and tracked.model_id is None
    with pytest.raises(RuntimeError):
        with tracked_run(NullTracker(), spec):
            raise RuntimeError("nothing to record it in")
    assert not (tmp_path / "untouched.db").exists()
    assert not (tmp_path / "mlruns").exists()


class _RaiseAt(Callback):
    """A training callback that raises once epoch ``epoch`` has ended."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, state, record) -> None:
        if record["epoch"] >= self.epoch:
            raise RuntimeError(f"after epoch {record['epoch']}")
