"""Sweep specifications (``sweeps/<study>.yaml``): validated whole before trial 1.

A spec holds the base config, the search space (dotted config names, optionally conditional on
earlier choices), the objective, sampler, pruner, per-trial budget and configs to enqueue first.
This is the only module that calls ``trial.suggest_*``. The models themselves are in
:mod:`cifar_hpo.sweep.schema` (re-exported here).

Example::

    base: {model.name: airbench_small, batch_size: 256}
    budget: {epochs: 4, train_fraction: 0.3}
    space:
      optim.lr: {type: float, low: 0.01, high: 1.0, log: true}
      model.name: {type: categorical, choices: [airbench_small, resnet20]}
      model.width: {type: float, low: 0.5, high: 1.0, when: {model.name: [resnet20]}}
    sampler: {name: tpe, seed: 0}
    pruner: {name: hyperband, min_resource: 1}
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import optuna
from pydantic import ValidationError

from cifar_hpo.config import ConfigError, allowed_keys, load_yaml, with_overrides
from cifar_hpo.errors import SweepSpecError  # noqa: F401 (re-exported)
from cifar_hpo.sweep.schema import (  # noqa: F401 (re-exported: the spec's models and metrics)
    ALLOWED_METRICS,
    CONFIG_MEASURES,
    COST_MEASURES,
    TIME_TO_ACC,
    VALIDATION_METRICS,
    BudgetSpec,
    LimitSpec,
    ObjectiveSpec,
    ParamSpec,
    PrunerSpec,
    RefitSpec,
    SamplerSpec,
    SweepSpec,
    metric_direction,
)

SWEEPS_DIR = Path("sweeps")


def objective_text(spec: SweepSpec) -> str:
    """``maximize val_acc, minimize params``."""
    return ", ".join(f"{o.direction} {o.metric}" for o in spec.objective)


def _format(err: ValidationError, where: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc!r}{allowed_keys(SweepSpec, e['loc'])}"
    if e["type"] in ("literal_error",):
        return f"{where}: {loc}: got {e.get('input')!r}; {msg.lower()}"
    if e["type"] == "value_error":
        return f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}"
    return f"{where}: {loc}: {msg} (got {e.get('input')!r})"


def parse_spec(values: dict[str, Any], where: str = "sweep") -> SweepSpec:
    """Validate a spec mapping completely: structure, ranges, and every searched value and
    enqueued config against the training config (so unknown keys, model names, schedulers or
    bad values fail here, not in trial 17).

    Raises:
        SweepSpecError: one line naming ``where`` and the offending key and value.
    """
    try:
        spec = SweepSpec.model_validate(values)
    except ValidationError as err:
        raise SweepSpecError(_format(err, where)) from None
    try:
        base = spec.base_config()
    except ConfigError as err:
        raise SweepSpecError(f"{where}: base: {err}") from None
    known = set(base.to_flat())
    for name, param in spec.space.items():
        for cond in param.when:
            if cond not in spec.space and cond not in known:
                raise SweepSpecError(f"{where}: space.{name}.when: unknown parameter {cond!r}")
        # check every candidate value under every combination of its conditions, so a
        # model hyperparameter is checked against each model it is conditional on
        conds = list(param.when.items())
        for combo in itertools.product(*(allowed for _, allowed in conds)):
            for value in param.candidates():
                overrides = {name: value, **{c: v for (c, _), v in zip(conds, combo, strict=True)}}
                if name.startswith("model.") and "model.name" not in overrides:
                    overrides["model.name"] = base.model.name
                try:
                    with_overrides(base, overrides)
                except ConfigError as err:
                    raise SweepSpecError(f"{where}: space.{name}: {err}") from None
    for i, params in enumerate(spec.enqueue):
        try:
            with_overrides(base, params)
        except ConfigError as err:
            raise SweepSpecError(f"{where}: enqueue[{i}]: {err}") from None
        unknown = [k for k in params if k not in spec.space]
        if unknown:
            raise SweepSpecError(
                f"{where}: enqueue[{i}]: {unknown[0]!r} is not a searched parameter; "
                f"searched: {', '.join(spec.space)}"
            )
    if spec.sampler.name == "grid":
        bad = [n for n, p in spec.space.items() if p.type != "categorical" and p.step is None]
        if bad:
            raise SweepSpecError(
                f"{where}: sampler grid needs categorical or stepped parameters; {bad[0]!r} is "
                "continuous"
            )
    return spec


def spec_path(study: str, sweeps_dir: str | Path = SWEEPS_DIR) -> Path:
    """``sweeps/<study>.yaml``; a path to a YAML file is used as is.

    Raises:
        SweepSpecError: no such study file (lists the available studies).
    """
    candidate = Path(study)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = Path(sweeps_dir) / f"{study}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in Path(sweeps_dir).glob("*.yaml"))
        raise SweepSpecError(
            f"unknown study {study!r}: no {path}; available: {', '.join(available) or 'none'}"
        )
    return path


def load_spec(study: str, sweeps_dir: str | Path = SWEEPS_DIR) -> SweepSpec:
    """Read and validate ``sweeps/<study>.yaml`` (see :func:`parse_spec`)."""
    path = spec_path(study, sweeps_dir)
    try:
        values = load_yaml(path)
    except ConfigError as err:
        raise SweepSpecError(str(err)) from None
    return parse_spec(values, str(path))


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Sample the search space for ``trial``; returns dotted overrides for the base config.

    Conditional parameters are suggested only when their ``when`` holds for the values chosen
    so far (or the base config's values).
    """
    base = spec.base_config().to_flat()
    chosen: dict[str, Any] = {}
    for name, p in spec.space.items():
        current = {**base, **chosen}
        if any(current.get(k) not in allowed for k, allowed in p.when.items()):
            continue
        if p.type == "categorical":
            chosen[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "int":
            step = int(p.step) if p.step else 1
            chosen[name] = trial.suggest_int(name, int(p.low), int(p.high), step=step, log=p.log)
        else:
            chosen[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    return chosen


def build_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the spec names (TPE is multivariate with conditional groups; with
    several objectives it is Optuna's multi-objective TPE). Constraints reach every sampler
    through ``trial.set_constraint``."""
    s = spec.sampler
    if s.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=s.seed, n_startup_trials=s.n_startup_trials, multivariate=True, group=True
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "grid":
        grid = {}
        for name, p in spec.space.items():
            if p.type == "categorical":
                grid[name] = list(p.choices or [])
            else:
                n = int(round((p.high - p.low) / p.step)) + 1
                grid[name] = [p.low + i * p.step for i in range(n)]
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    return optuna.samplers.QMCSampler(seed=s.seed)


def build_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner the spec names; resources are epochs."""
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource,
            max_resource=spec.budget.epochs,
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()
