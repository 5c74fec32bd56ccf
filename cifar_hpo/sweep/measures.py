"""The measures a trial reports besides its validation metrics, and how each is computed.

``time_to_acc@X``: the training seconds (``epoch_seconds`` summed, validation included) until
the validation accuracy first reaches X; a trial that never reaches it reports twice its total
training seconds (as if it would need as long again; it ranks behind any trial that reached X in
the time it spent), and an untrained one infinity. ``train_flops``: training images x forward
MACs per image x 6 (2 FLOPs per MAC, forward plus a backward pass of twice its cost). An
untrained trial (a constraint known from the config violated) reports accuracy-like metrics 0
and ``val_loss`` ln(classes).
"""

from __future__ import annotations

import json
import math
from typing import Any

from cifar_hpo.config import TrainConfig
from cifar_hpo.engine import Result
from cifar_hpo.models import count_macs, count_parameters, create_model

#: objective metric name -> key of :class:`~cifar_hpo.metrics.EvalReport` metrics
METRIC_KEYS = {"val_acc": "acc", "val_loss": "loss", "val_f1_macro": "f1_macro", "val_top5": "top5"}


def time_to_accuracy(history: list[dict[str, Any]], target: float) -> float:
    """Training seconds (``epoch_seconds`` summed, validation included) until ``val_acc``
    first reaches ``target`` (a fraction); twice the total when it never does, infinity for
    an empty history (see the module docstring for the rule)."""
    elapsed = 0.0
    for record in history:
        elapsed += float(record.get("epoch_seconds") or 0.0)
        acc = record.get("val_acc")
        if acc is not None and acc >= target:
            return elapsed
    return 2.0 * elapsed if history else math.inf


def untrained_measures(num_classes: int) -> dict[str, float]:
    """The measures of a trial that trained nothing (see the module docstring)."""
    return {
        "val_acc": 0.0,
        "val_f1_macro": 0.0,
        "val_top5": 0.0,
        "val_loss": math.log(num_classes),
        "train_seconds": 0.0,
        "train_flops": 0.0,
    }


def trained_measures(result: Result, macs: int) -> dict[str, float]:
    """Validation metrics, training seconds and training FLOPs (MACs x 2 x 3 per training
    image) of a finished run."""
    values = {
        name: float(result.val.metrics[key])
        for name, key in METRIC_KEYS.items()
        if result.val is not None
    }
    values["train_seconds"] = float(sum(r.get("epoch_seconds") or 0.0 for r in result.history))
    values["train_flops"] = float(result.images_seen) * macs * 6
    return values


class ModelSizes:
    """(parameters, forward MACs per image) per model config, computed once each
    (:func:`cifar_hpo.models.count_macs`)."""

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int]] = {}

    def __call__(self, config: TrainConfig, num_classes: int) -> tuple[int, int]:
        key = json.dumps([config.model.name, config.model.hparams, num_classes], sort_keys=True)
        if key not in self._sizes:
            model = create_model(config.model.name, num_classes, **config.model.hparams)
            self._sizes[key] = (count_parameters(model), count_macs(model))
        return self._sizes[key]
