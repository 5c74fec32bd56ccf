"""Throughput probing: the training images/s of each architecture a study can sample, on
this machine, which a budgeted study is planned from (:mod:`cifar_hpo.sweep.plan`)."""

from __future__ import annotations

from typing import Any

from cifar_hpo.config import ConfigError, TrainConfig, with_overrides
from cifar_hpo.sweep.storage import DEFAULT_STORAGE_DIR
from cifar_hpo.sweep.study import PreparedSweep, base_config
from cifar_hpo.throughput import ThroughputCache


def architectures(prep: PreparedSweep, overrides: dict[str, Any] | None) -> list[TrainConfig]:
    """One config per architecture the study can sample (``model.name`` choices, else the
    base model), with the base config's model hyperparameters where the model takes them (so
    ``model.width: 0.3`` is probed at width 0.3, not at the model's default), at the base
    config's batch size or the middle ``batch_size`` choice."""
    base = base_config(prep, overrides)
    names = [base.model.name]
    space = prep.spec.space
    if "model.name" in space and space["model.name"].type == "categorical":
        names = list(space["model.name"].choices or names)
    changes: dict[str, Any] = {}
    if "batch_size" in space:
        values = sorted(space["batch_size"].candidates())
        changes["batch_size"] = int(values[len(values) // 2])
    hparams = {f"model.{k}": v for k, v in base.model.hparams.items()}
    configs = []
    for name in names:
        try:  # the base's model hyperparameters (e.g. model.width) where this model has them
            configs.append(with_overrides(base, {**changes, "model.name": name, **hparams}))
        except ConfigError:
            configs.append(with_overrides(base, {**changes, "model.name": name}))
    return configs


def measure_speeds(prep: PreparedSweep, overrides, say) -> dict[str, float]:
    """Training images/s of each architecture on this machine (cached in
    ``studies/throughput.json`` per machine and config)."""
    cache = ThroughputCache(DEFAULT_STORAGE_DIR / "throughput.json")
    speeds: dict[str, float] = {}
    for config in architectures(prep, overrides):
        value, cached = cache.images_per_sec(config, prep.data)
        speeds[config.model.name] = value
        if not cached:
            say(f"measured {config.model.name}: {value:,.0f} training images/s")
    return speeds
