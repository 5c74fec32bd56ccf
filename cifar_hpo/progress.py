"""Rich progress display for training: an epoch bar and a batch bar with live metrics."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result, TrainState


def make_progress(console: Console | None = None) -> Progress:
    """The one bar layout of cifar-hpo: description, bar, done/total, elapsed, live info."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


class RichProgress(Callback):
    """Shows ``epoch k/N`` with the last train/val loss and accuracy, and a batch bar with the
    running images/s. Pass ``progress`` to share one live display with an outer sweep bar."""

    def __init__(
        self, console: Console | None = None, progress: Progress | None = None, label: str = "train"
    ):
        self.own = progress is None
        self.progress = progress or make_progress(console)
        self.label = label
        self.epoch_task = None
        self.batch_task = None
        self._t0 = 0.0

    def on_train_start(self, state: TrainState) -> None:
        if self.own:
            self.progress.start()
        self.epoch_task = self.progress.add_task(
            f"{self.label} epochs",
            total=math.ceil(state.config.epochs),
            completed=state.epoch,
            info="",
        )
        self.batch_task = self.progress.add_task("  batches", total=state.steps_per_epoch, info="")
        self._t0 = time.perf_counter()

    def on_batch_end(self, state: TrainState, step: int, loss: float | None) -> None:
        if step == 1:
            self._t0 = time.perf_counter()
        rate = (step - 1) * state.config.batch_size / max(time.perf_counter() - self._t0, 1e-9)
        info = f"loss {loss:.3f}  " if loss is not None else ""
        self.progress.update(
            self.batch_task, completed=step, info=f"{info}{rate:.0f} img/s" if step > 1 else info
        )

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        parts = [f"train {record['train_loss']:.3f}/{record['train_acc']:.3f}"]
        if "val_acc" in record:
            parts.append(f"val {record['val_loss']:.3f}/{record['val_acc']:.3f}")
        parts.append(f"{record['images_per_sec']:.0f} img/s")
        self.progress.update(self.epoch_task, completed=state.epoch, info="  ".join(parts))

    def on_train_end(self, state: TrainState, result: Result) -> None:
        self.close()

    def close(self) -> None:
        """Remove this run's bars (or stop the display this callback owns)."""
        if self.own:
            self.progress.stop()
        else:
            for task in (self.epoch_task, self.batch_task):
                if task is not None:
                    self.progress.remove_task(task)
        self.epoch_task = self.batch_task = None
