"""Champion vs challenger, on plain data: per-class deltas, the confusion-matrix difference,
the images two models disagree on, and their size and speed side by side.

The arithmetic of ``cifar-hpo compare``. Its inputs are what runs log (``per_class.json``: one
dict per class with ``name``, ``precision``, ``recall``, ``f1``, ``support``; the weights file of
a logged model) and class probabilities of both models on the same images. Finding the runs and
logging the result is :mod:`cifar_hpo.sweep.compare`'s job: this module knows nothing of MLflow
or Optuna. Every delta is challenger minus champion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cifar_hpo.device import InputTransform
from cifar_hpo.errors import UserError
from cifar_hpo.export import NormalizedClassifier
from cifar_hpo.latency import measure_latency_ms
from cifar_hpo.metrics import predict_logits
from cifar_hpo.models import count_macs, count_parameters, create_model
from cifar_hpo.tta import tta_passes

#: the per-class metrics compared, as named in ``per_class.json``
CLASS_METRICS = ("precision", "recall", "f1")


def per_class_deltas(
    champion: Sequence[dict[str, Any]], challenger: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per-class precision, recall and F1 of both runs and their difference.

    Args:
        champion, challenger: per-class reports as logged (``per_class.json``), one dict per
            class in label order.

    Returns:
        One dict per class, in label order: ``name``, ``support`` (the challenger's) and
        ``champion``, ``challenger``, ``delta`` (challenger - champion), each a dict with
        ``precision``, ``recall``, ``f1`` (fractions in [0, 1]; deltas in [-1, 1]).

    Raises:
        UserError: the two reports are not of the same classes in the same order.
    """
    names_a = [row["name"] for row in champion]
    names_b = [row["name"] for row in challenger]
    if names_a != names_b:
        raise UserError(
            f"the runs are of different classes ({len(names_a)} vs {len(names_b)}: "
            f"{', '.join(names_a[:3])}... vs {', '.join(names_b[:3])}...); compare runs of one "
            "dataset"
        )
    rows = []
    for a, b in zip(champion, challenger, strict=True):
        pa = {m: float(a[m]) for m in CLASS_METRICS}
        pb = {m: float(b[m]) for m in CLASS_METRICS}
        rows.append(
            {
                "name": b["name"],
                "support": int(b.get("support", 0)),
                "champion": pa,
                "challenger": pb,
                "delta": {m: pb[m] - pa[m] for m in CLASS_METRICS},
            }
        )
    return rows


def macro_deltas(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Unweighted means over classes of :func:`per_class_deltas` rows: ``champion``,
    ``challenger`` and ``delta``, each ``{precision, recall, f1}`` (the runs' macro averages)."""
    out: dict[str, dict[str, float]] = {}
    for side in ("champion", "challenger", "delta"):
        out[side] = {
            m: float(np.mean([r[side][m] for r in rows])) if rows else 0.0 for m in CLASS_METRICS
        }
    return out


def model_from_weights(weights: dict[str, Any]) -> nn.Module:
    """The trained model of a logged weights file (``extra_files/state_dict.pt``: ``model``,
    ``config``, ``class_names``), on the CPU in eval mode.

    Raises:
        UnknownModelError: the config names a model this version does not register.
        RuntimeError: the weights do not fit the model the config describes.
    """
    config = weights["config"]
    hparams = {k: v for k, v in config["model"].items() if k != "name"}
    model = create_model(config["model"]["name"], len(weights["class_names"]), **hparams)
    model.load_state_dict(weights["model"])
    return model.eval()


def deployed_model(model: nn.Module, weights: dict[str, Any]) -> nn.Module:
    """``model`` as exported and served: RGB in [0, 1] (B, 3, 32, 32) -> logits (B, C), its
    training normalization and test-time augmentation level inside."""
    tta = int(weights["config"].get("tta", 0))
    return NormalizedClassifier(model, weights["mean"], weights["std"], tta).float().cpu().eval()


def class_probabilities(
    model: nn.Module,
    weights: dict[str, Any],
    images: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
) -> torch.Tensor:
    """Softmax probabilities of a logged model on uint8 images, as its run evaluated them
    (its normalization and TTA level, fp32).

    Args:
        model: from :func:`model_from_weights` (moved to ``device`` and back).
        weights: the weights file it came from (``mean``, ``std``, ``config.tta``).
        images: uint8 (N, 32, 32, 3) HWC RGB.
        device: where to compute.
        batch_size: images per forward pass.

    Returns:
        float32 (N, num_classes) on the CPU, rows summing to 1.
    """
    device = torch.device(device)
    images = torch.as_tensor(images)
    to_input = InputTransform(weights["mean"], weights["std"], device, channels_last=False)
    tta = int(weights["config"].get("tta", 0))
    model.to(device)
    try:
        logits = predict_logits(model, images, to_input, batch_size, tta)
    finally:
        model.cpu()
    return torch.softmax(logits.float(), dim=1)


def confusion_matrix(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (C, C) counts: rows true classes, columns predictions (as ``EvalReport``),
    computed by torchmetrics' ``multiclass_confusion_matrix``."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    matrix = multiclass_confusion_matrix(
        torch.as_tensor(np.asarray(preds), dtype=torch.long),
        torch.as_tensor(np.asarray(labels), dtype=torch.long),
        num_classes=num_classes,
    )
    return matrix.numpy().astype(np.int64)


def confusion_changes(
    diff: np.ndarray, class_names: Sequence[str], k: int = 5
) -> list[dict[str, Any]]:
    """The ``k`` off-diagonal cells of a confusion difference with the largest absolute change
    (ties: label order), as ``{"true", "predicted", "change"}`` (change in images; negative
    means the challenger makes that mistake less often)."""
    cells = [
        (abs(int(diff[i, j])), i, j)
        for i in range(diff.shape[0])
        for j in range(diff.shape[1])
        if i != j and diff[i, j] != 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {"true": class_names[i], "predicted": class_names[j], "change": int(diff[i, j])}
        for _, i, j in cells[:k]
    ]


@dataclass
class Disagreements:
    """Where two models' top-1 predictions differ, on one split.

    Attributes:
        images: images scored.
        total: images the two predict differently.
        challenger_right: of those, the challenger right and the champion wrong.
        champion_right: the champion right and the challenger wrong.
        both_wrong: both wrong (with different classes).
        top: the ``top_n`` with the largest gap in the probability each model gives the true
            class, largest first: dicts with ``index`` (into the split), ``label``,
            ``champion_pred``, ``challenger_pred`` (class indices), ``champion_conf``,
            ``challenger_conf`` (probability of its own prediction), ``champion_true``,
            ``challenger_true`` (probability of the true class) and ``gap`` (challenger_true -
            champion_true, in [-1, 1]: positive where the challenger is the surer of the truth).
    """

    images: int
    total: int
    challenger_right: int
    champion_right: int
    both_wrong: int
    top: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the counts and the top images."""
        return {
            "images": self.images,
            "total": self.total,
            "challenger_right": self.challenger_right,
            "champion_right": self.champion_right,
            "both_wrong": self.both_wrong,
            "top": self.top,
        }


def find_disagreements(
    champion_probs: torch.Tensor | np.ndarray,
    challenger_probs: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    top_n: int = 16,
) -> Disagreements:
    """The images two models classify differently, the ``top_n`` most telling first.

    Args:
        champion_probs, challenger_probs: float (N, C) class probabilities on the same images.
        labels: int (N,) true classes.
        top_n: how many disagreements to list (>= 0), ordered by the absolute gap in the
            probability the two give the true class (ties: the lower index first).

    Returns:
        A :class:`Disagreements`.
    """
    pa = np.asarray(champion_probs, dtype=np.float64)
    pb = np.asarray(challenger_probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    pred_a, pred_b = pa.argmax(axis=1), pb.argmax(axis=1)
    differ = np.flatnonzero(pred_a != pred_b)
    right_a, right_b = pred_a == labels, pred_b == labels
    rows = np.arange(len(labels))
    true_a, true_b = pa[rows, labels], pb[rows, labels]
    gap = true_b - true_a
    order = differ[np.argsort(-np.abs(gap[differ]), kind="stable")][: max(top_n, 0)]
    top = [
        {
            "index": int(i),
            "label": int(labels[i]),
            "champion_pred": int(pred_a[i]),
            "challenger_pred": int(pred_b[i]),
            "champion_conf": float(pa[i, pred_a[i]]),
            "challenger_conf": float(pb[i, pred_b[i]]),
            "champion_true": float(true_a[i]),
            "challenger_true": float(true_b[i]),
            "gap": float(gap[i]),
        }
        for i in order
    ]
    return Disagreements(
        images=len(labels),
        total=len(differ),
        challenger_right=int(np.sum(right_b[differ] & ~right_a[differ])),
        champion_right=int(np.sum(right_a[differ] & ~right_b[differ])),
        both_wrong=int(np.sum(~right_a[differ] & ~right_b[differ])),
        top=top,
    )


def model_cost(
    model: nn.Module, weights: dict[str, Any], latency_repeats: int = 50, warmup: int = 10
) -> dict[str, Any]:
    """Size and speed of a logged model.

    Returns:
        ``params`` (trainable parameters), ``macs`` (multiply-accumulates per 32x32 image, one
        forward pass, as ``cifar-hpo models``), ``tta`` (test-time augmentation level) with
        ``forward_passes`` (per image at that level), and ``latency_ms``: batch-1 CPU latency
        of the model as exported (normalization and TTA included), by the protocol of
        :func:`cifar_hpo.latency.measure_latency_ms`; None when ``latency_repeats`` is 0.
    """
    tta = int(weights["config"].get("tta", 0))
    latency = None
    if latency_repeats > 0:
        served = deployed_model(model, weights)
        latency = measure_latency_ms(served, warmup=warmup, repeats=latency_repeats)
    return {
        "params": count_parameters(model),
        "macs": count_macs(model),
        "tta": tta,
        "forward_passes": tta_passes(tta),
        "latency_ms": latency,
    }
