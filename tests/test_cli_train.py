"""The CLI end to end on tiny data: data import/info, models, train, resume, lr-find, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import fails_with, tiny_config
from synthetic import make_archive, write_class_folders
from typer.testing import CliRunner

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.cli import app
from cifar_hpo.data import CIFAR10_CLASSES
from cifar_hpo.models import list_models

PNG = b"\x89PNG\r\n\x1a\n"
FAST = ["--set", "device=cpu", "--set", "amp=off", "--set", "eval_batch_size=200"]
TIMING_KEYS = {"epoch_seconds", "images_per_sec"}


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def _run_folder(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    assert folders[0].name.endswith("-seed000_cnn")
    return folders[0]


# ----------------------------------------------------------------------------- data


def test_data_import_archive_then_info(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_HPO_DATA_DIR", raising=False)
    write_class_folders(tmp_path / "src", num_classes=10, n_train=3, n_test=2)
    archive = make_archive(tmp_path / "src", tmp_path / "mycopy.tar.gz", top="cifar10")
    data_dir = tmp_path / "data"
    result = _invoke("data", "import", archive, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "imported cifar10: 30 train, 20 test images, 10 classes" in result.output
    assert (data_dir / "cache" / "cifar10.npz").is_file()

    result = _invoke("data", "info", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "cifar10: 30 train / 20 test" in result.output
    rows = [line.split("│") for line in result.output.splitlines() if line.count("│") == 5]
    cells = {row[2].strip(): (row[3].strip(), row[4].strip()) for row in rows}
    assert cells == {name: ("3", "2") for name in CIFAR10_CLASSES}
    # the source (a long temporary path wraps at the console's width)
    assert "mycopy.tar.gz" in result.output.replace("\n", "")


def test_data_info_without_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_HPO_DATA_DIR", raising=False)
    result = _invoke("data", "info", "--data-dir", tmp_path / "empty")
    fails_with(result, "no cifar10 cache", "cifar-hpo data import")


def test_models_lists_every_registered_model():
    result = _invoke("models")
    assert result.exit_code == 0, result.output
    first_cells = {
        line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│")
    }
    assert set(list_models()) <= first_cells


# ----------------------------------------------------------------------------- train


def test_train_writes_a_complete_run_folder_and_resume_is_a_no_op(data_dir, tmp_path):
    out = tmp_path / "RUNS"
    result = _invoke(
        "train",
        "--model",
        "seed000_cnn",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        *FAST,
        "--out",
        out,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    run = _run_folder(out)
    assert f"wrote {run}" in result.output.replace("\n", "")
    names = {
        "config.yaml",
        "history.json",
        "history.csv",
        "metrics.json",
        "per_class.json",
        "classification_report.txt",
        "confusion.json",
        "checkpoint.pt",
        "plots",
    }
    assert names <= {p.name for p in run.iterdir()}

    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    csv_lines = (run / "history.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("epoch,lr,train_loss")
    config = (run / "config.yaml").read_text()
    assert "name: seed000_cnn" in config and "batch_size: 32" in config and "epochs: 2" in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 2
    assert 0.0 <= metrics["test"]["acc"] <= 1.0
    assert metrics["images_seen"] == 2 * 8 * 32  # 270 training images, batch 32
    per_class = json.loads((run / "per_class.json").read_text())
    assert [r["name"] for r in per_class] == list(CIFAR10_CLASSES)
    assert sum(r["support"] for r in per_class) == 100  # the whole test set
    confusion = json.loads((run / "confusion.json").read_text())
    assert len(confusion) == 10 and sum(map(sum, confusion)) == 100
    report = (run / "classification_report.txt").read_text()
    assert "macro avg" in report and "airplane" in report
    for plot in ("curves", "confusion", "per_class"):  # curves: loss, accuracy and LR
        data = (run / "plots" / f"{plot}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, plot
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["model"]["name"] == "seed000_cnn"

    # resuming a finished run trains nothing and keeps its history
    result = _invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 0, result.output
    again = json.loads((run / "history.json").read_text())
    assert _strip(again) == _strip(history)
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]
    assert [p.name for p in out.iterdir()] == [run.name]  # no new run folder


def test_train_is_an_mlflow_run_like_a_trial(data_dir, tmp_path, monkeypatch):
    """`cifar-hpo train` logs to experiment `train`: params, every epoch, dataset, model,
    system metrics; --no-track writes no MLflow store; a crash ends the run FAILED."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'track.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # a sample in a short run
    out = tmp_path / "RUNS"
    args = ["train", "--model", "seed000_cnn", "--epochs", "3", *FAST, "--out", out]
    result = _invoke(*args, "--no-progress", "--set", "data.val_fraction=0.2")
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # the printed link opens the runs table, not MLflow 3's GenAI overview
    assert f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning" in (
        result.output.replace("\n", "")
    )
    (run,) = client.search_runs([exp.experiment_id])
    folder = _run_folder(out)
    assert run.info.status == "FINISHED" and run.info.run_name == folder.name
    assert run.data.tags["cifar_hpo.role"] == "train"
    assert run.data.tags["cifar_hpo.run_folder"] == str(folder)
    assert run.data.params["model.name"] == "seed000_cnn" and run.data.params["epochs"] == "3"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(steps) == [1, 2, 3]
    flops = client.get_metric_history(run.info.run_id, "train_flops")
    macs = run.data.metrics["macs"]
    assert sorted(m.value for m in flops) == [
        macs * 6 * n for n in (240, 480, 720)
    ]  # 240 training images, one batch
    assert {"test_acc", "final_val_acc", "seconds"} <= set(run.data.metrics)
    assert run.inputs.dataset_inputs[0].dataset.name == "cifar10"
    (model,) = client.search_logged_models([exp.experiment_id])
    assert model.source_run_id == run.info.run_id
    assert any(k.startswith("system/") for k in run.data.metrics), run.data.metrics.keys()
    assert f"MLflow run: {run.info.run_id}" in result.output.replace("\n", "")

    # --no-track: the run folder only
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'untracked.db'}")
    result = _invoke(*args, "--no-progress", "--no-track")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "untracked.db").exists()

    # a crash mid-training: the run ends FAILED with the reason, never RUNNING
    import cifar_hpo.engine

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cifar_hpo.engine, "train", broken)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = _invoke(*args, "--no-progress", "--no-system-metrics")
    assert result.exit_code != 0
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["cifar_hpo.reason"] == "RuntimeError: disk on fire"
    assert not mlflow.active_run()


def test_new_run_dir_never_reuses_a_folder(tmp_path, monkeypatch):
    from cifar_hpo.runs import new_run_dir

    monkeypatch.setattr("cifar_hpo.runs.time.strftime", lambda fmt: "20250101-000000")
    first = new_run_dir(tmp_path / "runs", "m")
    second = new_run_dir(tmp_path / "runs", "m")
    assert (first.name, second.name) == ("20250101-000000-m", "20250101-000000-m-2")
    # another process creates the folder between the check and the mkdir
    real_mkdir, raced = Path.mkdir, []

    def racing_mkdir(self, *args, **kwargs):
        if not raced and not self.exists():
            raced.append(self)
            os.mkdir(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    third = new_run_dir(tmp_path / "runs", "m")
    assert raced == [tmp_path / "runs" / "20250101-000000-m-3"]
    assert third.name == "20250101-000000-m-4" and third.is_dir()


class _Interrupt(Callback):
    def on_epoch_end(self, state, record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt


def test_resume_an_interrupted_run_finishes_it(data_dir, tiny_data, tmp_path):
    from cifar_hpo.engine import train

    cfg = tiny_config(epochs=2)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, [Checkpointing(run / "checkpoint.pt"), _Interrupt()])
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1

    result = _invoke("train", "--resume", run / "checkpoint.pt", "--no-progress")
    assert result.exit_code == 0, result.output
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    full = train(cfg, tiny_data)  # the uninterrupted run
    assert _strip(history) == _strip(full.history)
    assert (run / "plots" / "curves.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--model", "nope"],
            ["unknown model 'nope'", "choose one of: " + ", ".join(list_models())],
        ),
        (["--set", "optim.lr=-1"], ["optim.lr", "greater than 0", "(got -1)"]),
        (["--set", "foo=1"], ["unknown key 'foo'"]),
        (["--set", "optim.lr"], ["must look like key=value"]),
        (["--batch-size", "0"], ["batch_size", "(got 0)"]),
        (["--optimizer", "rmsprop"], ["optim.name", "'sgd', 'adam', 'adamw' or 'muon'"]),
    ],
)
def test_train_config_errors(tmp_path, args, fragments):
    result = _invoke("train", "--model", "seed000_cnn", *args, "--out", tmp_path / "runs")
    fails_with(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_train_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    fails_with(_invoke("train", "--config", bad, "--out", tmp_path), "malformed YAML", "line")


def test_resume_of_garbage_or_missing_checkpoint(tmp_path):
    garbage = tmp_path / "checkpoint.pt"
    garbage.write_bytes(b"not a checkpoint " * 50)
    fails_with(_invoke("train", "--resume", garbage), "corrupt")
    fails_with(_invoke("train", "--resume", tmp_path), "corrupt")  # the run folder
    fails_with(_invoke("train", "--resume", tmp_path / "nope"), "does not exist")


def test_train_out_under_a_regular_file(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _invoke("train", "--model", "seed000_cnn", *FAST, "--out", blocker / "runs")
    fails_with(result, "Not a directory", str(blocker))


# ----------------------------------------------------------------------------- lr-find


def test_lr_find_writes_plot_and_suggests(data_dir, tmp_path):
    plot = tmp_path / "tmp" / "lr.png"
    result = _invoke(
        "lr-find",
        "--model",
        "seed000_cnn",
        "--batch-size",
        "32",
        "--steps",
        "12",
        "--set",
        "device=cpu",
        "--set",
        "amp=off",
        "--plot",
        plot,
    )
    assert result.exit_code == 0, result.output
    assert "suggested max LR:" in result.output
    value = float(result.output.split("suggested max LR:")[1].split()[0])
    assert 1e-5 <= value <= 10.0
    data = plot.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000


def test_lr_range_test_is_reproducible_with_albumentations(tiny_data):
    from cifar_hpo.lr_find import lr_range_test

    cfg = tiny_config(**{"augment.policy": "seed002"})
    a = lr_range_test(cfg, tiny_data, start_lr=1e-4, end_lr=1.0, steps=10)
    b = lr_range_test(cfg, tiny_data, start_lr=1e-4, end_lr=1.0, steps=10)
    assert a.losses == b.losses and a.suggestion == b.suggestion
    assert len(a.lrs) == 10 and a.lrs[0] == pytest.approx(1e-4) and a.lrs[-1] == pytest.approx(1.0)


def test_lr_find_too_few_steps(data_dir, tmp_path):
    result = _invoke(
        "lr-find",
        "--model",
        "seed000_cnn",
        "--steps",
        "3",
        "--set",
        "device=cpu",
        "--plot",
        tmp_path / "lr.png",
    )
    fails_with(result, "steps must be >= 10, got 3")
    assert not (tmp_path / "lr.png").exists()


# ----------------------------------------------------------------------------- console script


def test_console_script_in_a_subprocess(data_dir):
    exe = shutil.which("cifar-hpo") or str(Path(sys.executable).parent / "cifar-hpo")
    env = {**os.environ, "CIFAR_HPO_DATA_DIR": str(data_dir), "COLUMNS": "120"}
    proc = subprocess.run(
        [exe, "data", "info"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "cifar10: 300 train / 100 test" in proc.stdout
    assert "airplane" in proc.stdout and str(data_dir) in proc.stdout


def test_train_recipe_then_overrides(data_dir, tmp_path):
    out = tmp_path / "runs"
    result = _invoke(
        "train",
        "--recipe",
        "airbench94",
        "--epochs",
        "1.5",
        "--out",
        out,
        "--no-progress",
        "--set",
        "model.width=0.125",
        "--set",
        "batch_size=64",
        "--set",
        "data.val_fraction=0.1",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    history = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]  # 1.5 epochs: 4 steps of 64, then 2
    assert history[-1]["images_seen"] == 6 * 64
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["model"] == {"name": "airbench94", "width": 0.125}
    assert saved["optim"]["decoupled"] is True and saved["optim"]["lookahead_steps"] == 5
    assert saved["tta"] == 2 and saved["epochs"] == 1.5 and saved["batch_size"] == 64


def test_train_unknown_recipe_is_one_line(data_dir, tmp_path):
    fails_with(_invoke("train", "--recipe", "nope", "--out", tmp_path), "unknown recipe 'nope'")


def test_known_harmless_library_warnings_are_silenced_only_inside_a_command():
    """The CLI boundary filters Optuna's TPE ExperimentalWarning and torch.export's "No
    complete tensor" warning by message while a command runs; outside it they still show."""
    import warnings

    import optuna

    from cifar_hpo.cli import friendly_errors

    def emit():
        optuna.samplers.TPESampler(multivariate=True, group=True, seed=0)
        warnings.warn(
            "No complete tensor found in the group! Returning the first one.", stacklevel=1
        )
        warnings.warn("something else", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        friendly_errors(emit)()
    assert [str(w.message) for w in inside] == ["something else"]
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        emit()
    shown = " | ".join(str(w.message) for w in outside)
    assert "is an experimental feature" in shown and "No complete tensor" in shown, shown


# ----------------------------------------------------------------------------- error boundary


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    data_dir, tmp_path, monkeypatch
):
    import torch

    import cifar_hpo.checkpoint as checkpoint

    real_save, calls = torch.save, []

    def save_until_the_disk_fills(obj, path):
        calls.append(path)
        if len(calls) == 1:
            return real_save(obj, path)
        Path(path).write_bytes(b"PK\x03\x04 half a zip")  # what a full disk leaves behind
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 46")

    monkeypatch.setattr(checkpoint.torch, "save", save_until_the_disk_fills)
    out = tmp_path / "runs"
    args = ["train", "--model", "seed000_cnn", "--epochs", "2", *FAST, "--out", out]
    line = fails_with(_invoke(*args, "--no-progress", "--no-track"), "no space left in")
    run = _run_folder(out)
    assert str(run) in line and "the last good checkpoint is intact" in line
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1  # epoch 1's, readable
    assert not (run / "checkpoint.pt.tmp").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    import cifar_hpo.models

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(cifar_hpo.models, "list_models", broken)
    result = _invoke("models")
    assert result.exit_code == 1 and isinstance(result.exception, ValueError), result.output
    assert "error: a bug" not in result.output


def test_cifar_hpo_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    from cifar_hpo.errors import CifarHpoError

    assert _invoke("compare", "nosuch", "other").exit_code == 2
    monkeypatch.setenv("CIFAR_HPO_DEBUG", "1")
    result = _invoke("compare", "nosuch", "other")
    assert isinstance(result.exception, CifarHpoError), result.output
    assert "unknown run 'nosuch'" in str(result.exception)
