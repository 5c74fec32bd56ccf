"""Learning-rate range test (Smith 2017; the LR finder source project 003 uses before
OneCycleLR)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cifar_hpo.config import TrainConfig
from cifar_hpo.data import CifarData
from cifar_hpo.device import autocast
from cifar_hpo.engine import build_components
from cifar_hpo.errors import ConfigError


@dataclass
class LRFindResult:
    """Learning rates tried (exponentially spaced), smoothed losses and the suggested max LR.

    ``suggestion`` is the LR at the steepest descent of the smoothed loss curve, the usual
    choice for OneCycleLR's ``max_lr``.
    """

    lrs: list[float]
    losses: list[float]
    suggestion: float


def lr_range_test(
    config: TrainConfig,
    data: CifarData,
    start_lr: float = 1e-5,
    end_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.05,
) -> LRFindResult:
    """Train for ``steps`` batches while raising the LR from ``start_lr`` to ``end_lr``.

    Stops early when the smoothed loss exceeds 4x its minimum (divergence).

    Raises:
        ValueError: ``start_lr`` >= ``end_lr``, non-positive LRs or ``steps`` < 10.
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if steps < 10:
        raise ConfigError(f"steps must be >= 10, got {steps}")
    # the run's own components (model with data-dependent init, optimizer, scaler, augmenter)
    c = build_components(config, data)
    model, optimizer, scaler, gen = c.model, c.optimizer, c.scaler, c.generator
    c.augment.set_epoch(0)  # seeds the albumentations ops: the same config gives the same curve
    images, labels, batch = c.train_images, c.train_labels, c.batch_size
    n = images.shape[0]
    factor = (end_lr / start_lr) ** (1.0 / (steps - 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    model.train()
    for i in range(steps):
        lr = start_lr * factor**i
        for group in optimizer.param_groups:
            group["lr"] = lr
        pick = torch.randint(0, n, (batch,), generator=gen)
        x = c.to_input(c.augment(images[pick], gen))
        y = labels[pick].to(c.device)
        with autocast(c.device, c.use_amp):
            loss = F.cross_entropy(model(x), y, label_smoothing=config.optim.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        avg = smoothing * value + (1 - smoothing) * avg if i else value
        lrs.append(lr)
        losses.append(avg)
        best = min(best, avg)
        if avg > 4 * best and i > 10:
            break
    if len(losses) < 3:
        return LRFindResult(lrs, losses, lrs[0] if lrs else start_lr)
    grads = np.gradient(np.array(losses), np.log(np.array(lrs)))
    cut = int(np.argmin(losses))
    suggestion = lrs[int(np.argmin(grads[: max(cut, 1) + 1]))]
    return LRFindResult(lrs, losses, float(suggestion))
