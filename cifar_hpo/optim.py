"""Optimizers and learning-rate schedules, each stepped at its own granularity."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from cifar_hpo.config import ConfigError, OptimConfig, ScheduleConfig
from cifar_hpo.muon import ChainedOptimizer, FilterMuon

#: Modules whose biases get ``optim.bias_scaler`` times the LR.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def total_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: ``ceil(epochs * steps_per_epoch)``, at least 1 (airbench94:
    ``ceil(48 * 9.9) = 476`` steps of 1,024 images on 50,000 images)."""
    return max(1, math.ceil(epochs * steps_per_epoch))


def torch_sgd_args(lr: float, wd: float, momentum: float, batch_size: int) -> tuple[float, float]:
    """airbench's decoupled SGD hyperparameters -> ``torch.optim.SGD``'s (lr, weight_decay).

    In the decoupled form (airbench94, after myrtle.ai's "How to train your ResNet" part 5),
    ``lr`` is the step size per 1,024 examples with the Nesterov momentum gain
    ``1 + 1 / (1 - momentum)`` divided out, and ``wd`` the weight decay per 1,024 examples,
    independent of the LR, so that lr, wd, momentum and batch size can be tuned one at a time.
    airbench sums the loss over the batch and passes ``lr / kilostep_scale`` and
    ``wd * batch_size / kilostep_scale / lr_torch`` with ``kilostep_scale = 1024 * (1 + 1 /
    (1 - momentum))``; our loss is the batch mean, whose gradient is ``batch_size`` times
    smaller, so the same updates come from::

        lr_torch = lr * batch_size / kilostep_scale
        weight_decay_torch = wd / lr

    Args:
        lr: LR per 1,024 examples (airbench94: 11.5).
        wd: weight decay per 1,024 examples (airbench94: 0.0153).
        momentum: SGD (Nesterov) momentum in [0, 1) (airbench94: 0.85).
        batch_size: images per step.

    Returns:
        ``(lr, weight_decay)`` for ``torch.optim.SGD`` on a batch-mean loss.
    """
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    return lr * batch_size / kilostep_scale, wd / lr


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, batch_size: int = 1024
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam, AdamW or Muon + SGD over the model's trainable parameters.

    By default weight decay is not applied to biases and normalization parameters (1-D
    tensors), as in most modern CIFAR recipes (timm). With ``cfg.decoupled`` (SGD and Muon's
    SGD part) ``lr`` and ``wd`` are converted by :func:`torch_sgd_args` and every trainable
    tensor decays, as in airbench94. Biases of normalization layers get ``cfg.bias_scaler`` times
    the LR and the same decay per step (their ``weight_decay`` is divided by the scaler). The
    first parameter group is always the main one (what ``LRSchedule.lr`` reports).

    ``muon`` follows airbench94_muon (KellerJordan/cifar10-airbench ``airbench94_muon.py``):
    every trainable conv filter (a 4-D tensor) goes to :class:`cifar_hpo.muon.FilterMuon` at
    ``cfg.muon_lr`` (momentum ``cfg.muon_momentum``, ``cfg.nesterov``, ``cfg.muon_ns_steps``
    Newton-Schulz steps, no weight decay), everything else to SGD as above, except that
    ``bias_scaler`` applies to every 1-D tensor (upstream gives its whitening bias the BatchNorm
    biases' LR), and both run as one :class:`cifar_hpo.muon.ChainedOptimizer` (SGD groups
    first). The LR schedule scales the Muon LR by the same factor, as upstream.

    Args:
        model: parameters with ``requires_grad`` at build time are optimized; a parameter frozen
            later (its ``grad`` left None) is skipped by the step.
        cfg: the optimizer section of the config.
        batch_size: images per step (used by the decoupled conversion only).

    Raises:
        ConfigError: ``muon`` for a model without trainable conv filters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    filters = [p for p in params if p.ndim == 4] if cfg.name == "muon" else []
    if cfg.name == "muon":
        if not filters:
            raise ConfigError(
                f"optim.name=muon needs trainable conv filters (4-D parameters); model "
                f"{type(model).__name__} has none: use optim.name=sgd, adam or adamw"
            )
        params = [p for p in params if p.ndim != 4]
        scaled_ids = {id(p) for p in params if p.ndim == 1}
    else:
        scaled_ids = {
            id(m.bias)
            for m in model.modules()
            if isinstance(m, NORM_LAYERS) and getattr(m, "bias", None) is not None
        }
    if cfg.decoupled:
        lr, wd = torch_sgd_args(cfg.lr, cfg.wd, cfg.momentum, batch_size)
        other = [p for p in params if id(p) not in scaled_ids]
        scaled = [p for p in params if id(p) in scaled_ids]
        groups = [
            {"params": other, "lr": lr, "weight_decay": wd},
            {"params": scaled, "lr": lr * cfg.bias_scaler, "weight_decay": wd / cfg.bias_scaler},
        ]
    else:
        lr = cfg.lr
        if cfg.bias_scaler == 1.0:
            scaled_ids = set()  # no group of their own: two groups, as before bias_scaler
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1 and id(p) not in scaled_ids]
        scaled = [p for p in params if id(p) in scaled_ids]
        groups = [
            {"params": decay, "weight_decay": cfg.wd},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": scaled, "lr": lr * cfg.bias_scaler, "weight_decay": 0.0},
        ]
    groups = [g for i, g in enumerate(groups) if i == 0 or g["params"]]
    # foreach=True: multi-tensor updates also on CPU (torch defaults to it on CUDA only);
    # the per-parameter Python loop cost ~8 % of a seed000_cnn step under Adam.
    if cfg.name in ("sgd", "muon"):
        sgd = torch.optim.SGD(
            groups,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            foreach=True,
        )
        if cfg.name == "sgd":
            return sgd
        muon = FilterMuon(
            filters,
            lr=cfg.muon_lr,
            momentum=cfg.muon_momentum,
            nesterov=cfg.nesterov and cfg.muon_momentum > 0,
            ns_steps=cfg.muon_ns_steps,
        )
        return ChainedOptimizer([sgd, muon])
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


class LRSchedule:
    """A torch LR scheduler plus when to step it.

    * ``onecycle``: ``OneCycleLR`` over ``ceil(epochs * steps_per_epoch)`` steps, per batch.
    * ``linear``: airbench94's schedule, per batch (``LambdaLR``): the LR factor rises linearly
      from ``start_factor`` to 1 over the first ``int(pct_start * total)`` steps, then falls
      linearly to ``end_factor`` at the last step (0.2 -> 1 over 23 %, then -> 0.07).
    * ``cosine``: ``CosineAnnealingLR`` per batch down to ``min_lr``, after an optional
      ``LinearLR`` warmup of ``warmup_epochs`` (chained with ``SequentialLR``).
    * ``step``: ``StepLR`` every ``step_size`` epochs, stepped per epoch.
    * ``plateau``: ``ReduceLROnPlateau`` on the validation loss, stepped per epoch.
    * ``constant``: no scheduler.

    The schedule is fitted to the number of epochs actually run, never truncated. Runs with
    fewer than 4 optimizer steps in all keep a constant LR under ``onecycle``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: ScheduleConfig,
        epochs: float,
        steps_per_epoch: int,
    ):
        self.name = cfg.name
        self.optimizer = optimizer
        total = total_steps(epochs, steps_per_epoch)
        self.per_batch = cfg.name in ("onecycle", "cosine", "linear")
        self.scheduler: Any
        if cfg.name == "linear":
            self.scheduler = lr_scheduler.LambdaLR(
                optimizer, LinearWarmupDecay(total, cfg.pct_start, cfg.start_factor, cfg.end_factor)
            )
        elif cfg.name == "onecycle" and total < 4:
            self.scheduler, self.per_batch = None, False  # too few steps for two phases
        elif cfg.name == "onecycle":
            self.scheduler = lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=total,
                # each phase needs >= 1 step (OneCycleLR divides by the phase length)
                pct_start=min(0.9, max(cfg.pct_start, 2.0 / total)),
                div_factor=cfg.div_factor,
                final_div_factor=cfg.final_div_factor,
                anneal_strategy="cos",
            )
        elif cfg.name == "cosine":
            warmup = min(total - 1, round(cfg.warmup_epochs * steps_per_epoch))
            cosine = lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, total - warmup), eta_min=cfg.min_lr
            )
            if warmup > 0:
                ramp = lr_scheduler.LinearLR(
                    optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
                )
                self.scheduler = lr_scheduler.SequentialLR(
                    optimizer, [ramp, cosine], milestones=[warmup]
                )
            else:
                self.scheduler = cosine
        elif cfg.name == "step":
            self.scheduler = lr_scheduler.StepLR(
                optimizer, step_size=cfg.step_size, gamma=cfg.gamma
            )
        elif cfg.name == "plateau":
            self.scheduler = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
            )
        else:
            self.scheduler = None

    @property
    def lr(self) -> float:
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        """Call after every optimizer step."""
        if self.per_batch:
            self.scheduler.step()

    def step_epoch(self, val_loss: float) -> None:
        """Call after every epoch with the validation loss (used by ``plateau``)."""
        if self.name == "plateau":
            self.scheduler.step(val_loss)
        elif self.scheduler is not None and not self.per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict:
        """Scheduler state for checkpoints (empty for ``constant``)."""
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


class LinearWarmupDecay:
    """LR factor of airbench94's schedule at a step (a ``LambdaLR`` lambda).

    ``start_factor -> 1`` linearly over the first ``int(total * pct_start)`` steps, then
    ``1 -> end_factor`` linearly until step ``total`` (airbench94: 0.2, 0.23, 0.07).
    """

    def __init__(self, total: int, pct_start: float, start_factor: float, end_factor: float):
        self.total, self.start_factor, self.end_factor = total, start_factor, end_factor
        self.warmup = int(total * pct_start)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            frac = step / self.warmup
            return self.start_factor * (1 - frac) + frac
        frac = (step - self.warmup) / max(1, self.total - self.warmup)
        return (1 - frac) + self.end_factor * frac
