"""Muon for convolution filters, and a chain that steps several optimizers as one.

airbench94_muon (KellerJordan/cifar10-airbench ``airbench94_muon.py``: 94.01 % mean of 200 runs
in 8 epochs) trains every trainable conv filter with Muon (momentum, then Newton-Schulz
orthogonalization of the update) and the rest (whitening bias, BatchNorm biases, the linear
head) with Nesterov SGD. :class:`FilterMuon` is PyTorch's own ``torch.optim.Muon`` step applied
to each filter seen as an (out, in * kh * kw) matrix, plus upstream's per-step weight
normalization; :class:`ChainedOptimizer` makes the SGD and the Muon one optimizer for the
engine, the LR schedule and the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import Tensor

from cifar_hpo.errors import ConfigError

__all__ = ["ChainedOptimizer", "FilterMuon"]


def _matrix(t: Tensor, layout: Tensor) -> Tensor:
    """``t`` (out, ...) as a matrix (out, fan_in) whose columns follow ``layout``'s memory order.

    A view when ``t`` has ``layout``'s strides, else a copy. Contiguous filters give upstream's
    ``t.reshape(len(t), -1)``; channels_last ones the columns in (kh, kw, in) order, a column
    permutation, which Muon's update commutes with (``NS(G P) = NS(G) P``; norms unchanged).
    """
    if t.ndim == 4 and not layout.is_contiguous():
        t = t.permute(0, 2, 3, 1)  # channels_last: (out, kh, kw, in) is the contiguous order
    return t.reshape(len(t), -1)


class FilterMuon(torch.optim.Muon):
    """``torch.optim.Muon`` over tensors of 2 or more dimensions, each seen as (out, fan_in).

    torch's Muon accepts 2-D parameters only; conv filters (out, in, kh, kw) go through its own
    step as the matrix view (out, in * kh * kw) (upstream's ``g.reshape(len(g), -1)``), so the
    momentum, Newton-Schulz iteration, LR adjustment and weight decay are torch's. Contiguous and
    channels_last filters are both viewed without copies; the momentum buffer keeps the filter's
    shape and layout. With ``normalize`` each filter is first rescaled to Frobenius norm
    ``sqrt(out)``, as airbench94_muon's Muon does before every update (``p.data.mul_(len(p) **
    0.5 / p.data.norm())``); the filters feed BatchNorms, so this only fixes the effective step
    size. torch's ``adjust_lr_fn="original"`` scales the LR by ``sqrt(max(1, out / fan_in))``,
    which is 1 for every airbench94 conv (upstream applies no adjustment).

    Differences from upstream's own Muon, none of which changes the update beyond rounding: its
    momentum buffer is ``momentum * buf + grad`` where torch's is ``(1 - momentum)`` times that
    (the orthogonalization divides by the norm), and it adds ``eps`` to the norm where torch
    clamps it.

    Args:
        params: tensors of 2 or more dimensions (or parameter groups of them).
        lr: step size per optimizer step, in units of the orthogonalized update (airbench94_muon:
            0.24).
        momentum: momentum in [0, 1) (airbench94_muon: 0.6).
        nesterov: Nesterov momentum (airbench94_muon: true).
        ns_steps: Newton-Schulz iterations (airbench94_muon: 3; torch's default is 5).
        weight_decay: torch Muon's decoupled weight decay (airbench94_muon: none).
        normalize: rescale each filter to norm ``sqrt(out)`` before its update.

    Raises:
        ValueError: a tensor with fewer than 2 dimensions, or an argument torch's Muon refuses.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float,
        nesterov: bool = True,
        ns_steps: int = 3,
        weight_decay: float = 0.0,
        normalize: bool = True,
    ) -> None:
        # torch's Muon checks the arguments and lays out its defaults, on a 2-D stand-in: its
        # __init__ refuses tensors of other than 2 dimensions, so the filters join through
        # Optimizer.__init__ instead
        args = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        defaults = torch.optim.Muon([torch.zeros(1, 1)], ns_steps=ns_steps, **args).defaults
        torch.optim.Optimizer.__init__(self, params, defaults)
        self.normalize = normalize
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ConfigError(
                        f"Muon needs tensors of 2 or more dimensions, got shape {tuple(p.shape)}"
                    )

    def _init_group(
        self,
        group: MutableMapping,
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        muon_momentum_bufs: list[Tensor],
    ) -> bool:
        """torch Muon's gathering of (param, grad, momentum buffer), as matrix views; called by
        its ``step`` under ``no_grad``. Normalizes each filter first (see the class)."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if torch.is_complex(p) or p.grad.is_sparse:
                raise RuntimeError("Muon supports dense real parameters only")
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None or buf.stride() != p.stride():  # new, or loaded in another layout
                new = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["momentum_buffer"] = buf = new if buf is None else new.copy_(buf)
            matrix = _matrix(p, p)
            if matrix.data_ptr() != p.data_ptr():  # a copy: the update would be lost
                raise ConfigError(
                    f"Muon: a filter of shape {tuple(p.shape)} has strides {p.stride()}, "
                    "neither contiguous nor channels_last"
                )
            if self.normalize:
                matrix.mul_(math.sqrt(len(p)) / matrix.norm())
            params_with_grad.append(matrix)
            grads.append(_matrix(p.grad, p))
            muon_momentum_bufs.append(_matrix(buf, p))
        return False  # no complex parameters


class ChainedOptimizer(torch.optim.Optimizer):
    """Optimizers over disjoint parameters, stepped and checkpointed as one.

    ``param_groups`` is the concatenation of the chained optimizers' own group dicts (the same
    objects), so an LR scheduler that scales every group's ``lr``, ``zero_grad``, gradient
    clipping and ``GradScaler`` act on all of them. ``state_dict`` holds one state dict per
    optimizer, in order; ``load_state_dict`` restores each and re-links the groups. ``defaults``
    are the first optimizer's (schedulers such as ``OneCycleLR`` look for ``momentum`` there).

    Args:
        optimizers: two or more optimizers; the first one's first group is the main one (what
            :attr:`cifar_hpo.optim.LRSchedule.lr` reports).

    Raises:
        ValueError: fewer than two optimizers, or a parameter in two of them.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        if len(optimizers) < 2:
            raise ConfigError(f"ChainedOptimizer needs 2 or more optimizers, got {len(optimizers)}")
        self.optimizers = tuple(optimizers)
        super().__init__([g for o in self.optimizers for g in o.param_groups], {})
        self.defaults = dict(self.optimizers[0].defaults)

    @property
    def state(self) -> dict[Tensor, Any]:  # type: ignore[override]
        """Per-parameter state of every chained optimizer (a merged, read-only copy)."""
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    @state.setter
    def state(self, value: Mapping) -> None:
        if value:  # Optimizer.__init__ assigns an empty one
            raise AttributeError("set a ChainedOptimizer's state through load_state_dict")

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every chained optimizer; ``closure`` is evaluated once, first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizers": [state dict of each chained optimizer, in order]}``."""
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: a state dict of another optimizer layout.
        """
        saved = state_dict.get("optimizers") if isinstance(state_dict, Mapping) else None
        if not isinstance(saved, list) or len(saved) != len(self.optimizers):
            raise ConfigError(
                f"optimizer state does not fit a chain of {len(self.optimizers)} optimizers "
                f"({', '.join(type(o).__name__ for o in self.optimizers)})"
            )
        for optimizer, state in zip(self.optimizers, saved, strict=True):
            optimizer.load_state_dict(state)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]
