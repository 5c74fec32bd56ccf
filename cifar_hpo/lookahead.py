"""Lookahead weight averaging with airbench94's cubic decay schedule.

Every ``every`` optimizer steps the slow weights move towards the fast ones,
``slow = decay * slow + (1 - decay) * fast``, and the fast weights are reset to the slow ones
(Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"). airbench94
(KellerJordan/cifar10-airbench ``legacy/airbench94.py``, ``LookaheadState``) lets the decay grow
with training, ``decay = decay_per_step ** every * (step / total) ** 3`` (0.95^5 at the end), so
early training is barely averaged and late training strongly; at the last step the fast weights
are set to the slow ones (a full sync). Every floating-point tensor of the state dict is
averaged, BatchNorm running statistics included, as upstream.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cifar_hpo.errors import ConfigError


class Lookahead:
    """Slow weights of ``model`` and the step rule above.

    Args:
        model: the trained model; its floating-point state-dict tensors are averaged in place.
        every: steps between averaging updates (airbench94: 5).
        total_steps: optimizer steps of the whole run (the schedule's horizon).
        decay_per_step: per-step decay; the update at step ``s`` uses
            :meth:`decay_at` ``(s) = decay_per_step ** every * (s / total_steps) ** 3``.
    """

    def __init__(self, model: nn.Module, every: int, total_steps: int, decay_per_step: float):
        if every < 1:
            raise ConfigError(f"lookahead every must be >= 1 step, got {every}")
        self.every, self.total_steps, self.decay_per_step = every, total_steps, decay_per_step
        self.slow = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }
        # the model's own tensors (state_dict shares their storage; loading a checkpoint copies
        # into them in place), gathered once so an update is two multi-tensor ops
        fast = model.state_dict()
        self._fast = [fast[k] for k in self.slow]
        self._slow = list(self.slow.values())

    def decay_at(self, step: int) -> float:
        """Decay of the update after optimizer step ``step`` (1-based)."""
        return self.decay_per_step**self.every * (step / self.total_steps) ** 3

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """``slow = decay * slow + (1 - decay) * fast``, then ``fast = slow`` (``model`` is the
        model given at construction, whose tensors are held)."""
        torch._foreach_lerp_(self._slow, self._fast, 1 - decay)
        torch._foreach_copy_(self._fast, self._slow)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Call after optimizer step ``step`` (1-based, counted over the whole run)."""
        if step % self.every == 0:
            self.update(model, self.decay_at(step))
        if step >= self.total_steps:
            self.update(model, 1.0)  # final sync: the fast weights become the slow ones

    def state_dict(self) -> dict[str, Any]:
        """The slow weights, for checkpoints."""
        return {"slow": self.slow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        for name, value in state["slow"].items():
            self.slow[name].copy_(value)
