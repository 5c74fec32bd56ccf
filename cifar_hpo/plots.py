"""Matplotlib figures of a run, saved as PNG files (the plots source projects 000 and 002 make)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in history if r.get(key) is not None]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def _save(fig, path: str | Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train vs validation, and the learning rate at the end of
    each epoch (three panels of one figure: one figure is cheaper to draw than several)."""
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.8))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ax_loss.plot(*_series(history, key), marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "validation")):
        ax_acc.plot(*_series(history, key), marker="o", label=label)
    ax_lr.plot(*_series(history, "lr"), marker="o")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="Accuracy")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="LR schedule")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend()
    return _save(fig, path)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalized confusion matrix (rows: true class) with counts for <= 20 classes."""
    c = np.asarray(confusion, dtype=float)
    norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(5.0, min(0.45 * k, 20.0))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_per_class(per_class: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars of precision, recall and F1 per class."""
    names = [r["name"] for r in per_class]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names)), 4))
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [r[key] for r in per_class], width=0.27, label=key)
    if len(names) <= 30:
        ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="score", title="Per-class metrics")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_confusion_diff(
    diff: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Challenger-minus-champion confusion counts (rows: true class), red where the challenger
    puts more images, blue fewer; counts written in the cells for <= 20 classes."""
    d = np.asarray(diff, dtype=float)
    k = len(class_names)
    size = max(5.0, min(0.45 * k, 20.0))
    fig, ax = plt.subplots(figsize=(size, size))
    limit = max(float(np.abs(d).max()), 1.0)
    im = ax.imshow(d, cmap="RdBu_r", vmin=-limit, vmax=limit)
    if k <= 20:
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                if d[i, j]:
                    color = "white" if abs(d[i, j]) > 0.6 * limit else "black"
                    ax.text(
                        j,
                        i,
                        f"{int(d[i, j]):+d}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=color,
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion difference")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_disagreements(
    images: np.ndarray,
    rows: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    path: str | Path,
    columns: int = 4,
) -> Path:
    """A grid of images two models classify differently, each titled with its true class and
    both predictions with their confidence (A: champion, B: challenger; a check mark on the
    correct one).

    Args:
        images: uint8 (N, 32, 32, 3) HWC RGB, one per row of ``rows``.
        rows: dicts with ``label``, ``champion_pred``, ``champion_conf``, ``challenger_pred``,
            ``challenger_conf`` (see :class:`cifar_hpo.compare.Disagreements`).
        class_names: names in label order.
        path: the PNG to write.
        columns: images per grid row.
    """
    n = len(rows)
    cols = max(1, min(columns, n))
    lines = max(1, -(-n // cols))
    fig, axes = plt.subplots(lines, cols, figsize=(2.4 * cols, 3.1 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row in zip(axes.flat, images, rows, strict=False):
        ax.imshow(image, interpolation="nearest")
        label = row["label"]
        marks = {True: " \u2713", False: ""}
        text = (
            f"true: {class_names[label]}\n"
            f"A: {class_names[row['champion_pred']]} {row['champion_conf']:.2f}"
            f"{marks[row['champion_pred'] == label]}\n"
            f"B: {class_names[row['challenger_pred']]} {row['challenger_conf']:.2f}"
            f"{marks[row['challenger_pred'] == label]}"
        )
        color = (
            "green"
            if row["challenger_pred"] == label
            else ("red" if row["champion_pred"] == label else "black")
        )
        ax.set_title(text, fontsize=8, color=color)
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "the two models agree on every image", ha="center")
    fig.suptitle("A: champion, B: challenger (green: B right, red: A right)", fontsize=9)
    return _save(fig, path, rect=(0, 0, 1, 0.97))


def plot_lr_finder(lrs: Sequence[float], losses: Sequence[float], suggestion: float, path) -> Path:
    """Loss vs learning rate (log x) of an LR range test, with the suggested LR marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="red", linestyle="--", label=f"suggested {suggestion:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="LR range test")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def save_run_plots(history, report, class_names, folder: str | Path) -> list[Path]:
    """All run figures into ``folder``: curves (loss, accuracy, LR), confusion matrix,
    per-class bars."""
    folder = Path(folder)
    paths = [plot_curves(history, folder / "curves.png")]
    if report is not None and report.confusion is not None:
        paths.append(plot_confusion(report.confusion, class_names, folder / "confusion.png"))
        paths.append(plot_per_class(report.per_class, folder / "per_class.png"))
    return paths
