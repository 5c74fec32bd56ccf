"""Run folders for ``cifar-hpo train``: config, history, reports, checkpoint and plots on disk."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import yaml

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result, TrainState
from cifar_hpo.plots import save_run_plots

HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
CHECKPOINT = "checkpoint.pt"


def new_run_dir(root: str | Path, model_name: str) -> Path:
    """A fresh ``<root>/<YYYYmmdd-HHMMSS>-<model>`` folder (suffixed if it exists).

    Raises:
        OSError: the folder cannot be created (for example an unwritable ``root``).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{model_name}"
    k = 1
    while True:
        path = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir(parents=True)  # fails if the folder exists, even if made a moment ago
            return path
        except FileExistsError:
            if not path.exists():  # a parent is in the way, not the run folder itself
                raise
            k += 1


def write_history(history: list[dict[str, Any]], folder: Path) -> None:
    """``history.json`` and ``history.csv`` (one row per epoch)."""
    (folder / HISTORY_JSON).write_text(json.dumps(history, indent=1))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with open(folder / HISTORY_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def report_dict(result: Result) -> dict[str, Any]:
    """Final summary: status, params, timings, validation and test metrics, per-class test."""
    return {
        "status": result.status,
        "message": result.message,
        "epochs_run": len(result.history),
        "num_params": result.num_params,
        "seconds": result.seconds,
        "images_seen": result.images_seen,
        "val": result.val.metrics if result.val else None,
        "test": result.test.metrics if result.test else None,
        "test_per_class": result.test.per_class if result.test else None,
    }


class RunFolderWriter(Callback):
    """Writes the resolved config at start, the history after every epoch, and at the end the
    metrics, the per-class report (JSON and text), the confusion matrix and the plots."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def on_train_start(self, state: TrainState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.yaml").write_text(yaml.safe_dump(state.config.to_dict()))

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        write_history(state.history, self.folder)

    def on_train_end(self, state: TrainState, result: Result) -> None:
        write_history(result.history, self.folder)
        (self.folder / "metrics.json").write_text(json.dumps(report_dict(result), indent=1))
        report = result.test or result.val
        if report is not None:
            (self.folder / "per_class.json").write_text(json.dumps(report.per_class, indent=1))
            (self.folder / "classification_report.txt").write_text(report.text_report() + "\n")
            (self.folder / "confusion.json").write_text(json.dumps(report.confusion.tolist()))
        save_run_plots(result.history, report, result.class_names, self.folder / "plots")
