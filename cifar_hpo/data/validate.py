"""Checks shared by every reader: CIFAR's shapes, dtypes and label ranges, and short messages.

:func:`validate_data` is what :func:`cifar_hpo.data.sources.read_source` and the cache run on a
dataset before handing it out; the small text and file helpers keep every reader's error
messages in one style.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cifar_hpo.data.classes import CLASSES, check_name
from cifar_hpo.data.dataset import CifarData, DatasetError

SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """Squash an exception (or text) into one short line for an error message."""
    text = str(exc) if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_list(items: Iterable[str], limit: int = 10) -> str:
    """The first ``limit`` items, comma-separated, then how many more there are."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def is_hidden(parts: Iterable[str]) -> bool:
    """True for macOS/IDE debris: dot files, ``._foo`` resource forks, ``__MACOSX/``."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def read_file(path: Path) -> bytes:
    """The bytes of ``path``; an unreadable file is a :class:`DatasetError` naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {one_line(e)}") from e


def validate_data(data: CifarData, where: str) -> None:
    """Check that a dataset has CIFAR's shapes, dtypes and label ranges.

    Args:
        data: the dataset to check.
        where: the source, for error messages.

    Raises:
        DatasetError: an unknown name; images not uint8 (N, 32, 32, 3); labels not int64 (N,);
            a label outside [0, num_classes); a class count that does not fit the name; a split
            that is empty or lacks a class.
    """
    check_name(data.name)
    expected = len(CLASSES[data.name])
    if data.num_classes != expected:
        raise DatasetError(
            f"{where} has {data.num_classes} class names; {data.name} has {expected}"
        )
    for split in SPLITS:
        images = getattr(data, f"{split}_images")
        labels = getattr(data, f"{split}_labels")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
            raise DatasetError(
                f"{split} images of {where} are {images.dtype} {images.shape}; "
                "expected uint8 (N, 32, 32, 3)"
            )
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise DatasetError(
                f"{split} labels of {where} are {labels.dtype} {labels.shape}; "
                f"expected int64 ({len(images)},)"
            )
        if len(labels) == 0:
            raise DatasetError(f"{split} split of {where} is empty")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= expected:
            raise DatasetError(
                f"{split} labels of {where} span [{lo}, {hi}]; expected [0, {expected - 1}]"
            )
        counts = np.bincount(labels, minlength=expected)
        if (counts == 0).any():
            absent = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
            raise DatasetError(
                f"{split} split of {where} has no images of class(es) {short_list(absent)}; "
                "train and test must hold the same classes"
            )
