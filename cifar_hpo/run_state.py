"""The state of one training run, shared by the engine and its callbacks: the live
:class:`TrainState` every callback hook receives, the :class:`Result` of
:func:`cifar_hpo.engine.train` and the final :class:`TrainStatus` of a run. Kept apart from
the engine so that callbacks import these types without importing the loop (no import
cycle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from cifar_hpo.config import TrainConfig
from cifar_hpo.lookahead import Lookahead
from cifar_hpo.metrics import EvalReport
from cifar_hpo.optim import LRSchedule


class TrainStatus(StrEnum):
    """How a run ended (a ``str``: ``"completed"`` == ``TrainStatus.COMPLETED``)."""

    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    STOPPED = "stopped"  # by a callback's request_stop


COMPLETED, EARLY_STOPPED, DIVERGED, STOPPED = (
    TrainStatus.COMPLETED,
    TrainStatus.EARLY_STOPPED,
    TrainStatus.DIVERGED,
    TrainStatus.STOPPED,
)


@dataclass
class Splits:
    """Index arrays into ``data.train_images`` for training and validation."""

    train_idx: np.ndarray
    val_idx: np.ndarray


@dataclass
class Result:
    """Outcome of :func:`train`.

    Attributes:
        status: ``completed``, ``early_stopped``, ``diverged`` or ``stopped`` (by a callback).
        message: one line explaining a non-completed status.
        history: one dict per epoch (see :func:`train`).
        model: the trained model (best weights when early-stopped), in eval mode.
        val: final validation report (None without a validation split).
        test: test-set report (None when ``evaluate_test=False`` or diverged).
        seconds: wall time of the whole run, evaluation included.
        images_seen: training images processed (the compute a run used).
        num_params: trainable parameters.
    """

    status: str
    message: str
    history: list[dict[str, Any]]
    model: nn.Module
    val: EvalReport | None
    test: EvalReport | None
    seconds: float
    images_seen: int
    num_params: int
    config: TrainConfig
    class_names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_val_acc(self) -> float:
        """Highest validation top-1 accuracy over the epochs (nan without validation)."""
        values = [r["val_acc"] for r in self.history if r.get("val_acc") is not None]
        return max(values) if values else float("nan")


class TrainState:
    """Live state of a run, passed to every callback hook."""

    def __init__(self, config: TrainConfig, model: nn.Module, optimizer, schedule, scaler, gen):
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.schedule: LRSchedule = schedule
        self.scaler: torch.amp.GradScaler = scaler
        self.generator: torch.Generator = gen
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps over the whole run
        self.total_steps = 0
        self.lookahead: Lookahead | None = None
        self.history: list[dict[str, Any]] = []
        self.images_seen = 0
        self.steps_per_epoch = 0
        self.num_train = 0
        self.num_val = 0
        self.stop_status: str | None = None
        self.stop_message = ""
        self.early_stopping: Any = None  # cifar_hpo.callbacks.EarlyStopping, when enabled

    def request_stop(self, status: str = STOPPED, message: str = "") -> None:
        """End training after the current epoch with ``status``."""
        self.stop_status, self.stop_message = status, message

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, scaler, RNGs,
        history and the resolved config."""
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "images_seen": self.images_seen,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead else None,
        }
