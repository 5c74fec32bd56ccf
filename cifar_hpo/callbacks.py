"""Training callbacks: the plug points of :func:`cifar_hpo.engine.train`.

The training core knows nothing of progress bars, Optuna or MLflow; they subscribe here.
A callback may call ``state.request_stop(reason)`` to end training after the current epoch,
or raise (for example ``optuna.TrialPruned``) to abort it; the exception propagates.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_hpo.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from cifar_hpo.run_state import Result, TrainState


class Callback:
    """Base class; override the hooks you need. All hooks receive the live :class:`TrainState`."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first (or first resumed) epoch."""

    def on_batch_end(self, state: TrainState, step: int, loss: float | None) -> None:
        """After each optimizer step; ``step`` counts from 1 within the epoch. ``loss`` is the
        batch loss when the engine already synchronized it, else None."""

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        """After validation of each epoch; ``record`` is the new history row."""

    def on_train_end(self, state: TrainState, result: Result) -> None:
        """After the final evaluation (not called when a callback raised)."""


class EarlyStopping(Callback):
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs
    (source project 001).

    Keeps a copy of the best weights; the engine restores them when this callback stopped the
    run, so the final evaluation scores the best epoch.
    """

    def __init__(self, patience: int, metric: str = "val_loss", min_delta: float = 0.0):
        self.patience = patience
        self.metric = metric
        self.min_delta = min_delta
        self.sign = -1.0 if metric.endswith("loss") else 1.0
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_weights: dict | None = None

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        score = self.sign * value
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = score, record["epoch"], 0
            self.best_weights = copy.deepcopy(state.model.state_dict())
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                state.request_stop(
                    "early_stopped",
                    f"{self.metric} did not improve for {self.patience} epochs "
                    f"(best {self.sign * self.best:.4f} at epoch {self.best_epoch})",
                )

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.best_weights = state["best_weights"]


class Checkpointing(Callback):
    """Write the full training state to ``path`` after every epoch (atomic replace)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        save_checkpoint(state.checkpoint_state(), self.path)
