"""Sweeps end to end on tiny synthetic data: CLI, resume, pruning, failures, MLflow, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from helpers import load_study as load
from helpers import sweep_ok as sweep
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.sweep.storage import default_storage_url

TINY = {
    "description": "tiny test study",
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "base": {
        "augment.policy": "flip",
        "device": "cpu",
        "amp": "off",
        "eval_batch_size": 200,
        "data.val_fraction": 0.2,
    },
    "budget": {"epochs": 2, "train_fraction": 1.0},
    "space": {
        "model.name": {"type": "categorical", "choices": ["seed000_cnn"]},
        "optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "batch_size": {"type": "categorical", "choices": [32]},
        "schedule.name": {"type": "categorical", "choices": ["onecycle", "constant"]},
    },
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    "top_k_models": 1,
}
runner = CliRunner()


def write_spec(name: str, **changes) -> None:
    spec = json.loads(json.dumps(TINY))
    spec.update(changes)
    Path("sweeps", f"{name}.yaml").write_text(yaml.safe_dump(spec))


def runs_of(client: MlflowClient, name: str):
    exp = client.get_experiment_by_name(f"cifar-hpo/{name}")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("cifar_hpo.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("cifar_hpo.role") == "trial"]
    return parents, trials


def test_two_trial_study_tracks_everything_and_resumes(project):
    write_spec("tiny")
    out = sweep("tiny", 2).output
    assert "2 new trials" in out
    study = load("tiny")
    assert len(study.trials) == 2
    client = MlflowClient()
    # the default store: the working folder's mlflow.db, artifacts under mlruns/
    local = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}")
    assert local.get_experiment_by_name("cifar-hpo/tiny") is not None and Path("mlruns").is_dir()
    parents, trials = runs_of(client, "tiny")
    assert len(parents) == 1 and len(trials) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    parent_artifacts = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in parent_artifacts
    state_to_status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for run in trials:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        number = int(tags["cifar_hpo.trial"])
        assert run.info.run_name == f"trial-{number}"
        trial = study.trials[number]
        assert tags["optuna.state"] == trial.state.name
        assert run.info.status == state_to_status[trial.state.name]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        params = run.data.params
        assert float(params["optim.lr"]) == pytest.approx(trial.params["optim.lr"])
        assert params["model.name"] == "seed000_cnn" and params["epochs"] == "2"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
        assert len(client.get_metric_history(run.info.run_id, "lr")) == 2
    best = study.best_trial
    best_run = client.get_run(best.user_attrs["mlflow_run_id"])
    assert best_run.data.metrics["final_val_acc"] == pytest.approx(best.value)
    assert {"test_acc", "test_top3", "test_top5", "test_f1_macro"} <= set(best_run.data.metrics)
    names = {f.path for f in client.list_artifacts(best_run.info.run_id)}
    assert {"config.yaml", "per_class.json", "classification_report.txt", "plots"} <= names
    # the model is an MLflow 3 LoggedModel of the run (the experiment's Models tab)
    (logged,) = client.search_logged_models([best_run.info.experiment_id])
    assert logged.source_run_id == best_run.info.run_id
    assert logged.tags["cifar_hpo.trial"] == str(best.number)
    assert best.user_attrs["mlflow_model_id"] == logged.model_id
    linked = {m.key for m in logged.metrics or []}
    assert "final_val_acc" in linked  # the run's final metrics are the model's too
    plots = {f.path for f in client.list_artifacts(best_run.info.run_id, "plots")}
    assert {"plots/confusion.png", "plots/per_class.png", "plots/curves.png"} <= plots
    # champion alias points at the best trial, and the registered model loads and predicts
    version = client.get_model_version_by_alias("cifar-hpo-tiny", "champion")
    assert version.run_id == best_run.info.run_id
    assert version.tags["cifar_hpo.model_id"] == logged.model_id
    assert version.tags["metric"] == "val_acc"
    assert study.user_attrs["champion"]["trial"] == best.number
    assert version.tags["trial"] == str(best.number)
    model = mlflow.pytorch.load_model("models:/cifar-hpo-tiny@champion")
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    import torch

    assert tuple(model(torch.from_numpy(x)).shape) == (3, 10)

    # resume: same study, same parent run, one more trial, nothing left RUNNING
    sweep("tiny", 1)
    study = load("tiny")
    assert len(study.trials) == 3
    assert len({t.number for t in study.trials}) == 3
    parents, trials = runs_of(client, "tiny")
    assert len(parents) == 1 and parents[0].info.run_id == parent.info.run_id
    assert len(trials) == 3
    assert all(r.info.status != "RUNNING" for r in trials + parents)

    listing = runner.invoke(app, ["studies"])
    assert listing.exit_code == 0 and "tiny" in listing.output


def test_search_trials_skip_the_test_pass_when_the_study_says_so(project):
    """budget.search_test false: a completed search trial is scored on validation only (no
    test_acc on the trial or its MLflow run); the test set is left to the refit or race."""
    write_spec("notest", budget={"epochs": 1, "train_fraction": 1.0, "search_test": False})
    out = " ".join(sweep("notest", 1).output.split())
    assert "best trial 0:" in out and "test acc nan" not in out, out
    (trial,) = load("notest").trials
    assert trial.state.name == "COMPLETE" and trial.value is not None
    assert "test_acc" not in trial.user_attrs
    _, (run,) = runs_of(MlflowClient(), "notest")
    assert "final_val_acc" in run.data.metrics
    assert not any(k.startswith("test_") for k in run.data.metrics), run.data.metrics


def test_bad_trial_is_pruned_and_failures_do_not_stop_the_study(project):
    write_spec(
        "prune",
        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 5},
        space={
            **TINY["space"],
            "optim.lr": {"type": "float", "low": 1e-9, "high": 1e30, "log": True},
        },
        enqueue=[
            {"optim.lr": 0.05, "schedule.name": "onecycle"},  # good: completes
            {"optim.lr": 1e-9, "schedule.name": "constant"},  # hopeless: pruned at epoch 1
            {"optim.lr": 1e30, "schedule.name": "constant"},  # diverges: FAIL
            {"optim.lr": 0.04, "schedule.name": "onecycle"},  # the study goes on after FAIL
        ],
    )
    sweep("prune", 4)
    study = load("prune")
    states = [t.state.name for t in study.trials]
    assert states[0] == "COMPLETE"
    assert states[3] in ("COMPLETE", "PRUNED") and study.trials[3].intermediate_values  # went on
    assert states[1] == "PRUNED"
    assert study.trials[1].user_attrs["pruned_at_epoch"] == 1
    assert max(study.trials[1].intermediate_values) == 1  # stopped after epoch 1 of 2
    assert states[2] == "FAIL"
    assert "non-finite" in study.trials[2].user_attrs["fail_reason"]
    client = MlflowClient()
    _, runs = runs_of(client, "prune")
    by_trial = {int(r.data.tags["cifar_hpo.trial"]): r for r in runs}
    assert by_trial[1].info.status == "KILLED"
    assert by_trial[1].data.tags["optuna.state"] == "PRUNED"
    assert by_trial[2].info.status == "FAILED"
    assert "non-finite" in by_trial[2].data.tags["cifar_hpo.reason"]


def test_trial_that_raises_is_failed_and_recorded(project, monkeypatch):
    import cifar_hpo.sweep.objective as sweep_objective

    real_train = sweep_objective.train
    calls = {"n": 0}

    def flaky_train(config, data, callbacks=(), **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory (simulated)")
        return real_train(config, data, callbacks, **kwargs)

    monkeypatch.setattr(sweep_objective, "train", flaky_train)
    write_spec("flaky")
    sweep("flaky", 2)
    study = load("flaky")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert "simulated" in study.trials[0].user_attrs["fail_reason"]
    run = MlflowClient().get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"


def test_best_errors(project):
    write_spec("empty")
    result = runner.invoke(app, ["best", "--study", "nosuch"])
    assert result.exit_code == 2 and "unknown study 'nosuch'" in result.output
    optuna.create_study(study_name="empty", storage=default_storage_url())
    result = runner.invoke(app, ["best", "--study", "empty"])
    assert result.exit_code == 2 and "no completed trial" in result.output
    result = runner.invoke(app, ["sweep", "--study", "missing", "--trials", "1"])
    assert result.exit_code == 2 and "unknown study 'missing'" in result.output


def test_subprocess_sweep_best_export_and_clean_load(project, tiny_data):
    """The console script as a subprocess runs a trial (one: a start-up costs more than a trial
    here; several trials are tested in process), then `best --export` writes a model that a
    process without cifar_hpo loads."""
    write_spec("sub")
    exe = Path(sys.executable).parent / "cifar-hpo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(exe), "sweep", "--study", "sub", "--trials", "1", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 new trials" in done.stdout, done.stdout
    shown = runner.invoke(app, ["best", "--study", "sub", "--export", "model.pt"])
    assert shown.exit_code == 0, shown.output
    assert Path("model.pt").is_file()
    best = load("sub").best_trial

    np.save("test_x.npy", tiny_data.test_images)
    np.save("test_y.npy", tiny_data.test_labels)
    script = (
        "import json, sys, numpy as np, torch\n"
        "extra = {'cifar_hpo.json': ''}\n"
        "with open('model.pt', 'rb') as f:\n"
        "    model = torch.export.load(f, extra_files=extra).module()\n"
        "meta = json.loads(extra['cifar_hpo.json'])\n"
        "x = torch.from_numpy(np.load('test_x.npy')).permute(0, 3, 1, 2).float() / 255\n"
        "y = torch.from_numpy(np.load('test_y.npy'))\n"
        "acc = (model(x).argmax(1) == y).float().mean().item()\n"
        "assert 'cifar_hpo' not in sys.modules\n"
        "print(json.dumps({'acc': acc, 'classes': meta['class_names']}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["classes"] == list(tiny_data.class_names)
    assert out["acc"] == pytest.approx(best.user_attrs["test_acc"], abs=1e-6)

    # predict: any size and mode, files and folders
    from PIL import Image

    folder = project / "imgs"
    folder.mkdir()
    Image.fromarray(tiny_data.test_images[0]).resize((64, 48)).save(folder / "a.png")
    Image.fromarray(tiny_data.test_images[1]).convert("L").save(folder / "b.jpg")
    result = runner.invoke(app, ["predict", "model.pt", str(folder)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 2
    for line in lines:
        path, label, conf = line.split("\t")
        assert label in tiny_data.class_names and 0 <= float(conf) <= 1


def test_predict_rejects_foreign_files(project):
    Path("foreign.pt").write_bytes(b"not a model at all")
    Path("img.png").write_bytes(b"")
    result = runner.invoke(app, ["predict", "foreign.pt", "img.png"])
    assert result.exit_code == 2
    assert "not a model exported by cifar-hpo" in result.output


def test_retried_trial_resumes_from_the_killed_trials_checkpoint(project, tiny_data):
    from optuna.trial import TrialState

    from cifar_hpo.callbacks import Callback, Checkpointing
    from cifar_hpo.config import with_overrides
    from cifar_hpo.engine import train
    from cifar_hpo.sweep.spec import load_spec, suggest
    from cifar_hpo.sweep.storage import RetryStaleTrial, trial_checkpoint_path
    from cifar_hpo.sweep.study import open_study

    write_spec("resume", budget={"epochs": 3, "train_fraction": 1.0})
    spec = load_spec("resume")
    study = open_study("resume", spec)
    params = {
        "model.name": "seed000_cnn",
        "optim.lr": 0.05,
        "batch_size": 32,
        "schedule.name": "onecycle",
    }
    # trial 0's worker trained one epoch, wrote its checkpoint, then died (SIGKILL: no cleanup)
    study.enqueue_trial(params)
    trial = study.ask()
    assert suggest(trial, spec) == params
    config = with_overrides(spec.base_config(), params)

    class Killed(Callback):
        def on_epoch_end(self, state, record):
            raise KeyboardInterrupt

    ckpt0 = trial_checkpoint_path("resume", 0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, [Checkpointing(ckpt0), Killed()])
    study.tell(trial, state=TrialState.FAIL)  # what the heartbeat / stale-trial check does
    RetryStaleTrial(max_retry=1)(study, study.trials[0])  # ... and it queues the retry

    sweep("resume", 1)
    study = load("resume")
    retry = study.trials[1]
    assert retry.state.name == "COMPLETE"
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": 1}
    assert sorted(retry.intermediate_values) == [1, 2, 3]
    assert not ckpt0.exists() and not trial_checkpoint_path("resume", 1).exists()
    # same history as an uninterrupted run of the same config
    full = train(config, tiny_data)
    assert retry.value == pytest.approx(full.val.metrics["acc"])


def test_sweep_whose_new_trials_all_fail_exits_non_zero(project, monkeypatch):
    import cifar_hpo.sweep.objective as sweep_objective

    def broken_train(config, data, callbacks=(), **kwargs):
        raise RuntimeError("CUDA error: device-side assert (simulated)")

    monkeypatch.setattr(sweep_objective, "train", broken_train)
    write_spec("broken")
    result = runner.invoke(app, ["sweep", "--study", "broken", "--trials", "2", "--no-progress"])
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: all 2 new trials failed: RuntimeError: CUDA error: device-side assert (simulated)"
    ], result.stderr
    assert [t.state.name for t in load("broken").trials] == ["FAIL", "FAIL"]


def test_changed_search_space_is_refused_unless_allowed(project):
    from helpers import fails_with

    from cifar_hpo.sweep.spec import SweepSpecError, load_spec
    from cifar_hpo.sweep.storage import SPACE_ATTR
    from cifar_hpo.sweep.study import open_study

    write_spec("space")
    open_study("space", load_spec("space"), default_storage_url())  # created with TINY's space
    recorded = load("space").user_attrs[SPACE_ATTR]
    assert recorded["optim.lr"]["high"] == 0.1
    changed = json.loads(json.dumps(TINY["space"]))
    changed["optim.lr"]["high"] = 0.5
    changed["optim.wd"] = {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}
    write_spec("space", space=changed)
    result = runner.invoke(app, ["sweep", "--study", "space", "--trials", "1", "--no-progress"])
    fails_with(
        result,
        "study 'space' exists with another search space",
        "(differs in: optim.lr, optim.wd)",
        "--allow-space-change",
    )
    assert load("space").trials == []  # nothing ran
    with pytest.raises(SweepSpecError):
        open_study("space", load_spec("space"), default_storage_url())
    open_study("space", load_spec("space"), default_storage_url(), allow_space_change=True)
    assert load("space").user_attrs[SPACE_ATTR]["optim.lr"]["high"] == 0.5
    open_study("space", load_spec("space"), default_storage_url())  # the new one is recorded


def test_pruned_trial_run_holds_every_epoch_and_its_artifacts(project, monkeypatch):
    def prune_at_epoch_2(self):
        return max(self.study._storage.get_trial(self._trial_id).intermediate_values) >= 2

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", prune_at_epoch_2)
    write_spec("prunes", budget={"epochs": 3, "train_fraction": 1.0})
    sweep("prunes", 1)
    (trial,) = load("prunes").trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["pruned_at_epoch"] == 2
    client = MlflowClient()
    run_id = trial.user_attrs["mlflow_run_id"]
    steps = [m.step for m in client.get_metric_history(run_id, "val_acc")]
    assert steps == [1, 2]  # the epoch it was pruned at is logged too
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "history.json", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/curves.png" in plots
    (dataset,) = client.get_run(run_id).inputs.dataset_inputs  # the runs table's Dataset
    assert dataset.dataset.name == "cifar10"


def test_trial_checkpoint_stays_until_the_trial_is_recorded(project, monkeypatch):
    from cifar_hpo.sweep.objective import Objective
    from cifar_hpo.sweep.storage import trial_checkpoint_path

    seen = []
    real_complete = Objective._complete

    def complete(self, trial, run, result, measures):
        seen.append(trial_checkpoint_path(self.study_name, trial.number).exists())
        return real_complete(self, trial, run, result, measures)

    monkeypatch.setattr(Objective, "_complete", complete)
    write_spec("ckpt")
    sweep("ckpt", 1)
    assert seen == [True]  # a worker killed while recording could still resume the trial
    assert not trial_checkpoint_path("ckpt", 0).exists()  # and it is gone once recorded


def test_no_run_left_running_when_the_study_summary_fails(project, monkeypatch):
    """A plot error at the end of the sweep: the parent run still ends FINISHED (and the
    trials are recorded); nothing in the experiment is left RUNNING."""
    import cifar_hpo.sweep.runs as sweep_runs

    def broken_plots(study, folder):
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(sweep_runs, "study_plots", broken_plots)
    write_spec("plotfail")
    sweep("plotfail", 1)
    parents, trials = runs_of(MlflowClient(), "plotfail")
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert [r.info.status for r in trials] == ["FINISHED"]
    assert parents[0].data.metrics["trials_complete"] == 1  # the summary metrics still logged


def test_a_trial_whose_tracking_fails_is_failed_and_its_run_closed(project, monkeypatch):
    """Model logging raises (a full disk, a broken store): the trial ends FAIL with the reason,
    its run FAILED, the study goes on to its next trial."""
    from cifar_hpo.tracking import TrialRun

    calls = {"n": 0}
    real = TrialRun.log_model

    def log_model_once_broken(self, result, mean, std):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real(self, result, mean, std)

    monkeypatch.setattr(TrialRun, "log_model", log_model_once_broken)
    write_spec("diskfull")
    sweep("diskfull", 2)
    study = load("diskfull")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert "No space left on device" in study.trials[0].user_attrs["fail_reason"]
    parents, trials = runs_of(MlflowClient(), "diskfull")
    status = {int(r.data.tags["cifar_hpo.trial"]): r.info.status for r in trials}
    assert status == {0: "FAILED", 1: "FINISHED"}
    assert parents[0].info.status == "FINISHED"
