"""A timm-style registry: models are builder functions registered by name.

A model is one decorated function; ``list_models()`` feeds the CLI choices and the test that is
parametrized over every model, so a new model is tested automatically::

    @register_model("tiny", source="ours", description="a tiny CNN")
    def tiny(num_classes: int = 10, width: float = 1.0) -> nn.Module: ...

    model = create_model("tiny", num_classes=100, width=0.5)

Builders take ``num_classes`` plus keyword hyperparameters that all have defaults; the defaults
are what ``model_info(name).hparams`` reports. Every error message is a single line, so the CLI
and the sweep can print it as is.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifar_hpo.errors import ConfigError, UnknownModelError  # noqa: F401 (re-exported)

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "check_dropout",
    "check_num_classes",
    "check_positive",
    "check_width",
    "count_macs",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "scaled",
]

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Attributes:
        name: registry name, e.g. ``"cifarnet"``.
        source: where the architecture comes from (source project, paper or repository).
        description: one line for ``--help`` and reports.
        hparams: the builder's keyword defaults (``num_classes`` excluded); a fresh copy.
    """

    name: str
    source: str
    description: str
    hparams: dict[str, Any]


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    builder: Builder
    accepts_any: bool  # the builder has **kwargs: no hparam-name check possible


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, source: str, description: str) -> Callable[[Builder], Builder]:
    """Register a builder ``(num_classes: int = 10, **hparams) -> nn.Module`` under ``name``.

    Args:
        name: unique registry name (what users type on the CLI and in sweep YAML).
        source: where the architecture comes from, e.g. ``"seed002"`` or a paper.
        description: one-line summary.

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is empty or already registered, or the builder has no
            ``num_classes`` parameter or an hparam without a default.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is already registered")
        params = inspect.signature(builder).parameters
        if "num_classes" not in params:
            raise ConfigError(f"builder for model {name!r} must take a 'num_classes' argument")
        defaults: dict[str, Any] = {}
        accepts_any = False
        for p in params.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                accepts_any = True
            elif p.name == "num_classes" or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            elif p.default is inspect.Parameter.empty:
                raise ConfigError(f"hparam {p.name!r} of model {name!r} needs a default")
            else:
                defaults[p.name] = p.default
        info = ModelInfo(name=name, source=source, description=description, hparams=defaults)
        _REGISTRY[name] = _Entry(info=info, builder=builder, accepts_any=accepts_any)
        return builder

    return decorator


def list_models() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model.

    Raises:
        UnknownModelError: ``name`` is not registered.
    """
    info = _entry(name).info
    return ModelInfo(info.name, info.source, info.description, dict(info.hparams))


def create_model(name: str, num_classes: int = 10, **hparams: Any) -> nn.Module:
    """Build a registered model (on CPU, in train mode, float32).

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of output logits, at least 2.
        **hparams: builder keywords, e.g. ``dropout=0.1, width=0.5``; see ``model_info(name)``.

    Returns:
        A module mapping normalized images (B, 3, 32, 32) to logits (B, num_classes).

    Raises:
        UnknownModelError: ``name`` is not registered (the message lists the choices).
        ValueError: an hparam name the builder does not take, or a bad value.
    """
    entry = _entry(name)
    if not entry.accepts_any:
        allowed = entry.info.hparams
        unknown = sorted(k for k in hparams if k not in allowed)
        if unknown:
            choices = ", ".join(sorted(allowed)) if allowed else "(none)"
            keys = ", ".join(repr(k) for k in unknown)
            raise ConfigError(f"unknown hparam {keys} for model {name!r}; allowed: {choices}")
    try:
        check_num_classes(num_classes)
        if "dropout" in hparams:
            check_dropout(hparams["dropout"])
        if "width" in hparams:
            check_width(hparams["width"])
        return entry.builder(num_classes=num_classes, **hparams)
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


# --- value checks shared by the builders (they call them too, so direct calls are checked) ---


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_num_classes(num_classes: object) -> int:
    """Return ``num_classes`` if it is an int >= 2, else raise a one-line ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    return int(num_classes)


def check_dropout(p: object, name: str = "dropout") -> float:
    """Return ``p`` as float if it is a probability in [0, 1), else raise a one-line ValueError."""
    if not _is_real(p) or not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as float if it is a finite number > 0, else raise a one-line ValueError."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_width(width: object) -> float:
    """Return ``width`` as float if it is a finite number > 0, else raise a one-line ValueError."""
    return check_positive(width, "width")


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """Scale a channel count by ``width`` and round to the nearest multiple of ``divisor``.

    Never returns less than ``divisor`` (a layer keeps at least one channel group).
    """
    return max(divisor, int(round(channels * width / divisor)) * divisor)


# --- model statistics --------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (``requires_grad``) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Return multiply-accumulates per image for one forward pass.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs // 2), so only
    matmul-like ops (convolutions, linear layers) count; BatchNorm, activations and pooling do
    not, as in torchinfo's "mult-adds". The model runs in eval mode without grad on a zero input
    on the device/dtype of its first parameter; each submodule's train/eval flag is restored.

    Args:
        model: any module.
        input_size: (B, C, H, W) of the probe input; the total is divided by B.

    Returns:
        MACs per image, an int.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        x = torch.zeros(input_size, device=device, dtype=dtype)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        flops = counter.get_total_flops()
    finally:
        for m, training in modes.items():
            m.training = training
    batch = input_size[0] if input_size and input_size[0] > 0 else 1
    return int(flops) // 2 // batch
