"""Classification metrics with torchmetrics: loss, top-k accuracy, macro and per-class P/R/F1."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from cifar_hpo.device import InputTransform, autocast
from cifar_hpo.tta import tta_logits


@dataclass
class EvalReport:
    """Metrics of one evaluation pass.

    Attributes:
        metrics: ``loss`` (mean cross-entropy, nats), ``acc`` (top-1), ``top3``, ``top5``,
            ``precision_macro``, ``recall_macro``, ``f1_macro``; fractions in [0, 1].
        per_class: one dict per class: ``name``, ``precision``, ``recall``, ``f1``, ``support``.
        confusion: int64 array (C, C); rows are true classes, columns predictions.
        correct: bool array (N,): whether each image's top-1 prediction is right, in the
            order scored (what the exact McNemar test of two models pairs up,
            :func:`cifar_hpo.stats.mcnemar`).
    """

    metrics: dict[str, float]
    per_class: list[dict] = field(default_factory=list)
    confusion: np.ndarray | None = None
    correct: np.ndarray | None = None

    def text_report(self) -> str:
        """A classification report as plain text (the layout of scikit-learn's)."""
        width = max(12, *(len(r["name"]) for r in self.per_class))
        lines = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
        for r in self.per_class:
            lines.append(
                f"{r['name']:>{width}} {r['precision']:9.4f} {r['recall']:9.4f} "
                f"{r['f1']:9.4f} {r['support']:9d}"
            )
        m = self.metrics
        total = sum(r["support"] for r in self.per_class)
        lines.append("")
        lines.append(f"{'accuracy':>{width}} {'':9} {'':9} {m['acc']:9.4f} {total:9d}")
        lines.append(
            f"{'macro avg':>{width}} {m['precision_macro']:9.4f} {m['recall_macro']:9.4f} "
            f"{m['f1_macro']:9.4f} {total:9d}"
        )
        lines.append(f"{'top-3 acc':>{width}} {m['top3']:9.4f}")
        lines.append(f"{'top-5 acc':>{width}} {m['top5']:9.4f}")
        return "\n".join(lines)


def _collection(num_classes: int) -> MetricCollection:
    kw = {"num_classes": num_classes}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(top_k=1, average="micro", **kw),
            "top3": MulticlassAccuracy(top_k=min(3, num_classes), average="micro", **kw),
            "top5": MulticlassAccuracy(top_k=min(5, num_classes), average="micro", **kw),
            "precision_macro": MulticlassPrecision(average="macro", **kw),
            "recall_macro": MulticlassRecall(average="macro", **kw),
            "f1_macro": MulticlassF1Score(average="macro", **kw),
            "precision_per_class": MulticlassPrecision(average=None, **kw),
            "recall_per_class": MulticlassRecall(average=None, **kw),
            "f1_per_class": MulticlassF1Score(average=None, **kw),
            "confusion": MulticlassConfusionMatrix(**kw),
        }
    )


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    to_input: InputTransform,
    batch_size: int = 1000,
    tta: int = 0,
    amp: bool = False,
) -> torch.Tensor:
    """Logits (N, num_classes) as float32 on the CPU for uint8 images (N, 32, 32, 3).

    ``tta`` is the test-time augmentation level (0, 1 = mirror, 2 = mirror + translations;
    see :func:`cifar_hpo.tta.tta_logits`); ``True``/``False`` mean 1/0.
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = to_input(images[start : start + batch_size])
            with autocast(to_input.device, amp):
                logits = tta_logits(model, x, int(tta))
            out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def compute_metrics(
    logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]
) -> EvalReport:
    """An :class:`EvalReport` from logits (N, C) and int64 labels (N,)."""
    num_classes = len(class_names)
    collection = _collection(num_classes)
    values = collection(logits, labels)
    metrics = {"loss": float(F.cross_entropy(logits, labels))}
    for key in ("acc", "top3", "top5", "precision_macro", "recall_macro", "f1_macro"):
        metrics[key] = float(values[key])
    confusion = values["confusion"].numpy().astype(np.int64)
    support = confusion.sum(axis=1)
    per_class = [
        {
            "name": name,
            "precision": float(values["precision_per_class"][i]),
            "recall": float(values["recall_per_class"][i]),
            "f1": float(values["f1_per_class"][i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    correct = (logits.argmax(dim=1) == labels).numpy()
    return EvalReport(metrics=metrics, per_class=per_class, confusion=confusion, correct=correct)
