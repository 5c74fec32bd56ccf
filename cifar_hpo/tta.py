"""Test-time augmentation: logits averaged over mirrored and translated views.

Levels follow airbench94 (KellerJordan/cifar10-airbench ``legacy/airbench94.py``, ``infer``):

* 0: the image alone.
* 1: mean of the image's and its mirror image's logits.
* 2: ``0.5 * level1(x) + 0.25 * level1(shift(x, -1, -1)) + 0.25 * level1(shift(x, +1, +1))``,
  the shifts taken from the image reflect-padded by one pixel (windows ``[0:H, 0:W]`` and
  ``[2:H+2, 2:W+2]``): six views, weights 1/4, 1/4 and 1/8 x 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifar_hpo.errors import ConfigError


def _mirror_mean(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(x) + 0.5 * model(x.flip(-1))


def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits (B, C) of ``model`` on normalized images ``x`` (B, 3, H, W) at TTA ``level``.

    Raises:
        ValueError: ``level`` not in 0, 1, 2.
    """
    if level == 0:
        return model(x)
    if level == 1:
        return _mirror_mean(model, x)
    if level == 2:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left = padded[:, :, 0:h, 0:w]
        down_right = padded[:, :, 2 : h + 2, 2 : w + 2]
        shifted = 0.5 * (_mirror_mean(model, up_left) + _mirror_mean(model, down_right))
        return 0.5 * _mirror_mean(model, x) + 0.5 * shifted
    raise ConfigError(f"tta level must be 0, 1 or 2, got {level!r}")


def tta_passes(level: int) -> int:
    """Forward passes per image at TTA ``level``: 1 (none), 2 (mirror), 6 (mirror and two
    one-pixel translations, each mirrored)."""
    return {0: 1, 1: 2, 2: 6}.get(int(level), 1)
