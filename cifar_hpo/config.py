"""The training configuration tree and its one vocabulary of dotted names.

A run is fully described by a frozen :class:`TrainConfig`. Dotted names such as ``optim.lr`` or
``augment.strength`` are the same in sweep YAML files, Optuna parameter names, MLflow params and
CLI overrides (``--set optim.lr=0.05``). Unknown keys and wrong types fail when the config is
built, before any training starts, with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cifar_hpo.errors import ConfigError  # noqa: F401 (re-exported)

#: augmentation policies (built by :func:`cifar_hpo.augment.build_augmenter`)
AUGMENT_POLICIES = (
    "strength",
    "none",
    "flip",
    "flip-translate",
    "alternating-flip-translate",
    "flip-crop",
    "seed002",
    "seed003",
    "seed004",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(_Section):
    """Which data a run trains on.

    Attributes:
        dataset: ``cifar10`` or ``cifar100``.
        data_dir: folder holding the dataset and its decoded cache (None: ``$CIFAR_HPO_DATA_DIR``
            or ``./data``).
        val_fraction: share of the training set held out, stratified, for validation
            (source project 003 uses 0.1). The test set is only used for the final evaluation.
        train_fraction: share of the remaining training images used (small sweep budgets).
        split_seed: seed of the validation split (kept apart from ``seed`` so that trials with
            different seeds are scored on the same validation images).
    """

    dataset: Literal["cifar10", "cifar100"] = "cifar10"
    data_dir: str | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    split_seed: int = 0


class ModelConfig(BaseModel):
    """Model name from the registry plus its own hyperparameters (``model.width``, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "airbench"

    @property
    def hparams(self) -> dict[str, Any]:
        """Builder keyword arguments other than the name, e.g. ``{"width": 0.5}``."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _known_model_and_hparams(self) -> ModelConfig:
        from cifar_hpo.models import list_models, model_info

        if self.name not in list_models():
            raise ConfigError(
                f"unknown model {self.name!r}; choose one of: {', '.join(list_models())}"
            )
        allowed = model_info(self.name).hparams
        for key, value in self.hparams.items():
            if key not in allowed:
                choices = ", ".join(sorted(allowed)) or "none"
                raise ConfigError(
                    f"model {self.name!r} has no hyperparameter {key!r}; allowed: {choices}"
                )
            # extras are untyped: give each the type of its builder default, so that wrong
            # types fail here and YAML strings such as "1e-3" reach the builder as floats
            self.__pydantic_extra__[key] = _like_default(f"model.{key}", value, allowed[key])
        return self


def _like_default(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (bool, int or float); other types as is."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if isinstance(default, int | float):
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is not None and isinstance(default, float):
            return float(number)
        if number is not None and float(number).is_integer():
            return int(number)
        kind = "a number" if isinstance(default, float) else "an integer"
        raise ConfigError(f"{key} must be {kind}, got {value!r}")
    return value


class OptimConfig(_Section):
    """Optimizer and loss settings.

    Attributes:
        name: ``sgd`` (momentum, optional Nesterov), ``adam``, ``adamw`` or ``muon``
            (airbench94_muon: Muon for the conv filters, SGD as ``sgd`` for the rest; see
            :func:`cifar_hpo.optim.build_optimizer`).
        lr: learning rate; the peak LR for OneCycleLR, the start LR otherwise. With
            ``decoupled``: the LR per 1,024 examples (airbench94: 11.5).
        momentum: SGD momentum (Adam's beta1 is left at its default).
        nesterov: Nesterov momentum for SGD (and for Muon's filters).
        wd: weight decay (L2 for SGD/Adam, decoupled for AdamW). With ``decoupled``: the
            weight decay per 1,024 examples, independent of the LR (airbench94: 0.0153).
        decoupled: SGD (and Muon's SGD part) only: read ``lr`` and ``wd`` in airbench's
            decoupled form (independent of momentum and batch size; converted once by
            :func:`cifar_hpo.optim.torch_sgd_args`) and decay every trainable tensor, as
            airbench94 does. Off: PyTorch's own arguments, no decay on biases and normalization
            parameters.
        bias_scaler: LR multiplier for the biases of normalization layers (airbench94: 64); the
            size of their weight decay step is left unchanged. Under ``muon`` it applies to
            every 1-D tensor of the SGD part (airbench94_muon: 0.053 / 0.67, its bias LR over
            its head LR).
        muon_lr: ``muon``: the conv filters' LR per optimizer step, in units of the
            orthogonalized update of a filter held at Frobenius norm sqrt(out channels); it
            does not depend on batch size or loss scale (airbench94_muon: 0.24). The LR
            schedule scales it like ``lr``.
        muon_momentum: ``muon``: the filters' momentum in [0, 1) (airbench94_muon: 0.6).
        muon_ns_steps: ``muon``: Newton-Schulz iterations per update (airbench94_muon: 3;
            ``torch.optim.Muon``'s default: 5).
        lookahead_steps: Lookahead weight averaging every this many optimizer steps (airbench94:
            5); 0 disables it. See :class:`cifar_hpo.lookahead.Lookahead`.
        lookahead_decay: per-step EMA decay of the lookahead; the decay applied every
            ``lookahead_steps`` steps is ``lookahead_decay ** lookahead_steps * (step/total)^3``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        grad_clip: max global gradient norm; 0 disables clipping (source project 002 uses 1.0).
    """

    name: Literal["sgd", "adam", "adamw", "muon"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    wd: float = Field(5e-4, ge=0.0)
    decoupled: bool = False
    bias_scaler: float = Field(1.0, gt=0.0)
    muon_lr: float = Field(0.24, gt=0.0)
    muon_momentum: float = Field(0.6, ge=0.0, lt=1.0)
    muon_ns_steps: int = Field(3, ge=1, lt=100)
    lookahead_steps: int = Field(0, ge=0)
    lookahead_decay: float = Field(0.95, gt=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.name in ("sgd", "muon") and self.nesterov and self.momentum == 0:
            raise ConfigError("optim.nesterov=true needs optim.momentum > 0")
        if self.decoupled and self.name not in ("sgd", "muon"):
            raise ConfigError(
                f"optim.decoupled=true needs optim.name=sgd, got {self.name!r} "
                "(or muon, whose other parameters use SGD: the decoupled form is defined for "
                "SGD momentum)"
            )
        return self


class ScheduleConfig(_Section):
    """Learning-rate schedule.

    Attributes:
        name: ``onecycle`` (OneCycleLR, stepped per batch), ``linear`` (airbench94's
            piecewise-linear warmup and decay, per batch), ``cosine`` (cosine annealing per
            batch with optional linear warmup), ``plateau`` (ReduceLROnPlateau on validation
            loss, per epoch), ``step`` (StepLR, per epoch) or ``constant``.
        pct_start: OneCycleLR and ``linear``: share of steps spent warming up (airbench94 0.23;
            ``linear`` with 0: no warmup, a linear decay from the first step, as
            airbench94_muon; OneCycleLR warms up for at least 2 steps).
        start_factor: ``linear``: LR at step 0 as a fraction of ``optim.lr`` (airbench94 0.2).
        end_factor: ``linear``: LR at the last step as a fraction of ``optim.lr`` (airbench94
            0.07).
        div_factor: OneCycleLR start LR = lr / div_factor.
        final_div_factor: OneCycleLR final LR = start LR / final_div_factor.
        warmup_epochs: cosine: linear warmup length in epochs (fractions allowed).
        min_lr: cosine: LR at the end of annealing.
        step_size: step: epochs between decays.
        gamma: step: decay factor.
        plateau_patience: plateau: epochs without improvement before decaying
            (source project 000: 2).
        plateau_factor: plateau: decay factor (source project 000: 0.1).
    """

    name: Literal["onecycle", "linear", "cosine", "plateau", "step", "constant"] = "onecycle"
    pct_start: float = Field(0.25, ge=0.0, lt=1.0)
    start_factor: float = Field(0.2, gt=0.0)
    end_factor: float = Field(0.07, ge=0.0)
    div_factor: float = Field(25.0, gt=0.0)
    final_div_factor: float = Field(1e4, gt=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    plateau_patience: int = Field(2, ge=0)
    plateau_factor: float = Field(0.1, gt=0.0, lt=1.0)


class AugmentConfig(_Section):
    """Training augmentation.

    Attributes:
        policy: ``strength`` (scaled by ``strength``) or a named policy such as ``none``,
            ``flip``, ``flip-crop``, ``seed002``, ``seed003``, ``seed004`` (see
            :mod:`cifar_hpo.augment`).
        strength: 0 = no augmentation, 1 = source project 002's full policy; used by
            ``strength``.
    """

    policy: str = "strength"
    strength: float = Field(0.25, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _known_policy(self) -> AugmentConfig:
        if self.policy not in AUGMENT_POLICIES:
            allowed = ", ".join(AUGMENT_POLICIES)
            raise ConfigError(f"unknown augment policy {self.policy!r}; choose one of: {allowed}")
        return self


class EarlyStoppingConfig(_Section):
    """Stop when a validation metric has not improved for ``patience`` epochs
    (source project 001).

    Attributes:
        patience: epochs without improvement before stopping; 0 disables early stopping.
        metric: ``val_loss`` (minimized) or ``val_acc`` (maximized).
        min_delta: smallest change that counts as an improvement.
    """

    patience: int = Field(0, ge=0)
    metric: Literal["val_loss", "val_acc"] = "val_loss"
    min_delta: float = Field(0.0, ge=0.0)


class TrainConfig(_Section):
    """Everything one training run needs. Frozen; build variants with :func:`with_overrides`.

    Attributes:
        epochs: passes over the training split; fractions allowed (airbench94 trains 9.9: the
            last epoch stops after ``ceil(epochs * steps_per_epoch)`` steps in all). The
            schedule is fitted to it.
        batch_size: training images per optimizer step.
        seed: seeds weight init, shuffling, augmentation and dropout.
        device: ``auto`` (cuda, then mps, then cpu) or a torch device string.
        amp: mixed precision: ``auto`` (CUDA fp16; bf16 on CPUs with AMX/AVX512-BF16), ``on``
            or ``off`` (YAML's unquoted ``on``/``off``, which it reads as booleans, work too).
        channels_last: use the NHWC memory format for activations and weights.
        tta: test-time augmentation level at validation, test and in exported models
            (airbench94's ``tta_level``): 0 none, 1 mirror (mean of image and mirror logits),
            2 mirror + one-pixel translations (see :func:`cifar_hpo.tta.tta_logits`).
            ``true``/``false`` mean 1/0.
        eval_batch_size: images per evaluation batch.
    """

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    augment: AugmentConfig = AugmentConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    epochs: int | float = Field(10, gt=0)
    batch_size: int = Field(512, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    channels_last: bool = True
    tta: int = Field(0, ge=0, le=2)
    eval_batch_size: int = Field(1000, ge=1)

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_from_yaml_bool(cls, value: Any) -> Any:
        # YAML 1.1 reads `amp: off` and `--set amp=on` as booleans
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_validator("tta", mode="before")
    @classmethod
    def _tta_from_bool(cls, value: Any) -> Any:
        # the flag was a bool before TTA had levels: true = mirror TTA (level 1)
        if isinstance(value, bool):
            return int(value)
        return value

    @field_validator("epochs", mode="after")
    @classmethod
    def _whole_epochs_as_int(cls, value: int | float) -> int | float:
        if not math.isfinite(value):
            raise ConfigError(f"epochs must be a finite number > 0, got {value!r}")
        return int(value) if float(value).is_integer() else float(value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a nested and/or dotted mapping; raises :class:`ConfigError`."""
        nested = nest(values)
        try:
            return cls.model_validate(nested)
        except ValidationError as err:
            raise ConfigError(_one_line(err, cls)) from None

    def to_flat(self) -> dict[str, Any]:
        """All resolved values as ``{"optim.lr": 0.1, "model.name": "airbench", ...}``."""
        return flatten(self.model_dump())

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as a nested plain dict (YAML/JSON ready)."""
        return self.model_dump()


def allowed_keys(model: type[BaseModel], loc: tuple) -> str:
    """``"; allowed: a, b"``: the keys the model class at ``loc[:-1]`` accepts ("" if unknown).

    ``loc`` is a pydantic error location; a ``dict[str, Model]`` field takes one key part."""
    node, parts = model, [str(p) for p in loc[:-1]]
    while parts:
        field = node.model_fields.get(parts.pop(0))
        ann = field.annotation if field is not None else None
        if get_origin(ann) is dict and parts:
            ann = get_args(ann)[-1]
            parts.pop(0)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        node = ann
    return f"; allowed: {', '.join(node.model_fields)}"


def _one_line(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, int))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = allowed_keys(model, e["loc"]) if model is not None else ""
            parts.append(f"unknown key {loc!r}{allowed}")
        elif e["type"] == "value_error":
            parts.append(msg if not loc else f"{loc}: {msg}")
        else:
            parts.append(f"{loc}: {msg} (got {e.get('input')!r})")
    return "; ".join(parts)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys. ``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted and nested keys -> one nested dict (later keys win)."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = nest(value)
        node = tree
        *parents, leaf = str(key).split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"key {key!r} goes inside {part!r}, which is a value")
            node = child
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = _merge(node[leaf], value)
        else:
            node[leaf] = value
    return tree


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.05", "tta=true"]`` -> dotted dict, values parsed as YAML scalars.

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=0.05")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def with_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A new config with dotted overrides applied and everything re-validated.

    Changing ``model.name`` drops the previous model's hyperparameters.
    """
    base = config.to_dict()
    nested = nest(overrides)
    model = nested.get("model")
    if isinstance(model, dict) and "name" in model and model["name"] != base["model"]["name"]:
        base["model"] = {"name": model["name"]}
    return TrainConfig.from_dict(_merge(base, nested))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; raises :class:`ConfigError` on a missing, empty or non-mapping
    file or bad YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {str(path)!r}{where}: {problem}") from None
    if data is None:  # an empty file is a mistake, not "all defaults"
        raise ConfigError(
            f"config file {str(path)!r} is empty: expected a mapping of keys such as 'epochs: 10'"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] = ()) -> TrainConfig:
    """Config from an optional YAML file plus dotted overrides (overrides win)."""
    values = nest(load_yaml(path)) if path else {}
    return TrainConfig.from_dict(_merge(values, nest(dict(overrides))))
