"""Learning-rate range test (Smith 2017; the LR finder seed 003 uses before OneCycleLR)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cifar_hpo.augment import build_augmenter
from cifar_hpo.config import TrainConfig
from cifar_hpo.data import CifarData
from cifar_hpo.device import (
    InputTransform,
    amp_enabled,
    autocast,
    make_grad_scaler,
    resolve_device,
)
from cifar_hpo.engine import make_splits
from cifar_hpo.models import create_model
from cifar_hpo.optim import build_optimizer


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
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if steps < 10:
        raise ValueError(f"steps must be >= 10, got {steps}")
    device = resolve_device(config.device)
    use_amp = amp_enabled(device, config.amp)
    torch.manual_seed(config.seed)
    model = create_model(config.model.name, data.num_classes, **config.model.hparams).to(device)
    optimizer = build_optimizer(model, config.optim, config.batch_size)
    # fp16 autocast on CUDA needs loss scaling, as in the engine, or small gradients underflow
    scaler = make_grad_scaler(device, use_amp)
    gen = torch.Generator().manual_seed(config.seed)
    augment = build_augmenter(
        config.augment.policy, config.augment.strength, data.mean, config.seed
    )
    augment.set_epoch(0)  # seeds the albumentations ops: the same config gives the same curve
    to_input = InputTransform(data.mean, data.std, device, config.channels_last)
    idx = make_splits(config, data).train_idx
    images = torch.from_numpy(data.train_images[idx])
    labels = torch.from_numpy(data.train_labels[idx]).long()
    batch = min(config.batch_size, len(idx))
    factor = (end_lr / start_lr) ** (1.0 / (steps - 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    model.train()
    for i in range(steps):
        lr = start_lr * factor**i
        for group in optimizer.param_groups:
            group["lr"] = lr
        pick = torch.randint(0, len(idx), (batch,), generator=gen)
        x = to_input(augment(images[pick], gen))
        y = labels[pick].to(device)
        with autocast(device, use_amp):
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
