"""Optional model hooks the training core calls, so a model's own needs stay in the model.

* :class:`DataDependentInit`: ``init_from_data(images)`` runs once, after the weights are built
  and moved to the device and before the first step, with normalized training images (for
  example airbench94's patch-whitening conv).
* :class:`EpochAware`: ``set_epoch(epoch)`` runs before every training epoch (0-based), for
  parameters that train only in some epochs (airbench94's whitening bias).

The core checks with ``isinstance`` (these are runtime-checkable protocols): a model needs no
base class, only the method.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DataDependentInit(Protocol):
    """A model initialised from training images before training."""

    #: how many training images (the first of the run's training split) ``init_from_data`` gets
    init_images: int

    def init_from_data(self, images: torch.Tensor) -> None:
        """Initialise from normalized float images (N, 3, H, W) on the model's device."""


@runtime_checkable
class EpochAware(Protocol):
    """A model whose trainable set changes with the epoch."""

    def set_epoch(self, epoch: int) -> None:
        """Called before training epoch ``epoch`` (0-based), also after a resume."""
