"""The in-memory dataset every run trains on: uint8 images, int64 labels, class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cifar_hpo.errors import DatasetError  # noqa: F401 (re-exported)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class CifarData:
    """A whole CIFAR-style dataset held in memory.

    Attributes:
        name: ``"cifar10"`` or ``"cifar100"``.
        train_images: uint8 array, shape (N_train, 32, 32, 3), HWC RGB.
        train_labels: int64 array, shape (N_train,), values in [0, num_classes).
        test_images: uint8 array, shape (N_test, 32, 32, 3).
        test_labels: int64 array, shape (N_test,).
        class_names: names in label order (label i is ``class_names[i]``).
        source: where the pixels came from (path or "synthetic").
        checksum: sha256 hex digest over images and labels (identifies the cache).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str = "memory"
    checksum: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        """Number of classes (10 or 100 for the real datasets)."""
        return len(self.class_names)

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean of the training pixels in [0, 1] (standard CIFAR constants)."""
        return CIFAR100_MEAN if self.name == "cifar100" else CIFAR10_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel standard deviation in [0, 1] (standard CIFAR constants)."""
        return CIFAR100_STD if self.name == "cifar100" else CIFAR10_STD
