"""Seeded, stratified index splits: train/validation and per-class training subsets."""

from __future__ import annotations

import math
import numbers

import numpy as np

from cifar_hpo.data.dataset import DatasetError


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"labels are {labels.dtype} with shape {labels.shape}; expected a 1-D integer array"
        )
    return labels


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _class_permutations(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """For each class present (ascending), its indices in a seeded random order."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    groups = np.split(order, starts[1:]) if len(order) else []
    return [rng.permutation(g) for g in groups]


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation, stratified by class.

    Each class with ``n_c`` examples puts ``round(n_c * val_fraction)`` of them (half rounds
    up) into validation, chosen with ``np.random.default_rng(seed)``; the same labels and seed
    give the same split.

    Args:
        labels: shape (N,), integer class labels.
        val_fraction: share of each class held out, in [0, 1); 0 gives an empty validation set.
        seed: RNG seed.

    Returns:
        (train_idx, val_idx): sorted int64 arrays, disjoint, together covering 0..N-1.

    Raises:
        DatasetError: ``val_fraction`` outside [0, 1) or not a number; labels not 1-D integers.
    """
    labels = _check_labels(labels)
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not 0 <= val_fraction < 1
    ):
        raise DatasetError(f"val_fraction is {val_fraction!r}; expected a number in [0, 1)")
    val = [p[: _round_half_up(len(p) * val_fraction)] for p in _class_permutations(labels, seed)]
    val_idx = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def subset_per_class(labels: np.ndarray, n_or_fraction: int | float, seed: int = 0) -> np.ndarray:
    """Pick a stratified subset, e.g. a small training budget for a quick sweep.

    For the same labels and seed, smaller subsets are contained in larger ones (each class's
    examples are shuffled once and a prefix is taken), which suits multi-fidelity sweeps.

    Args:
        labels: shape (N,), integer class labels (e.g. ``data.train_labels[train_idx]``).
        n_or_fraction: an int ``n >= 1`` takes ``min(n, n_c)`` examples of each class; a float
            in (0, 1] takes ``max(1, round(n_c * fraction))`` of each class.
        seed: RNG seed.

    Returns:
        Sorted int64 positions into ``labels``. To index a dataset through a split, use
        ``train_idx[subset_per_class(labels[train_idx], ...)]``.

    Raises:
        DatasetError: a non-positive count, a fraction outside (0, 1], a non-number, or labels
            that are not 1-D integers.
    """
    labels = _check_labels(labels)
    if isinstance(n_or_fraction, bool) or not isinstance(n_or_fraction, numbers.Real):
        raise DatasetError(
            f"subset size is {n_or_fraction!r}; expected an int >= 1 or a fraction in (0, 1]"
        )
    if isinstance(n_or_fraction, numbers.Integral):
        n = int(n_or_fraction)
        if n < 1:
            raise DatasetError(f"subset size is {n}; expected an int >= 1 per class")

        def take(n_c: int) -> int:
            return min(n, n_c)

    else:
        frac = float(n_or_fraction)
        if not 0 < frac <= 1:
            raise DatasetError(f"subset fraction is {frac!r}; expected a number in (0, 1]")

        def take(n_c: int) -> int:
            return min(n_c, max(1, _round_half_up(n_c * frac)))

    picked = [p[: take(len(p))] for p in _class_permutations(labels, seed)]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, np.int64)
