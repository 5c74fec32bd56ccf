"""This machine's training speed per model config, measured in a few warm steps and cached.

A budgeted sweep plans its trials from these figures (:mod:`cifar_hpo.sweep.plan`). One probe
trains the config with :func:`cifar_hpo.engine.train` on real training images for two short
epochs of ``steps`` optimizer steps each (no validation, no test) and keeps the second epoch's
training images/s: the first one pays for warm-up (allocator, autotuning, first-touch pages).

The cache is one JSON file (``studies/throughput.json`` for sweeps) keyed by machine (CPU model
and cores, CPU features, device, precision, torch version) and by model config (model name and
hyperparameters, batch size, memory format, autocast, augmentation policy): a figure measured on
another machine or for another config is never reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from cifar_hpo.config import TrainConfig, with_overrides
from cifar_hpo.data import CifarData
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.errors import ConfigError
from cifar_hpo.provenance import cpu_features, host_text, precision_text

PROBE_STEPS = 6


def machine_key(config: TrainConfig) -> str:
    """What decides a speed figure besides the model: CPU/GPU, features, device, precision."""
    device = resolve_device(config.device)
    amp = amp_enabled(device, config.amp)
    return (
        f"{host_text()} | {cpu_features()} | {device.type} | {precision_text(device, amp)} | "
        f"torch {torch.__version__} | threads {torch.get_num_threads()}"
    )


def model_key(config: TrainConfig) -> str:
    """The parts of a config that decide its training images/s."""
    return json.dumps(
        {
            "model": config.model.name,
            "hparams": config.model.hparams,
            "batch_size": config.batch_size,
            "channels_last": config.channels_last,
            "amp": config.amp,
            "augment": config.augment.policy,
            "optimizer": config.optim.name,
        },
        sort_keys=True,
    )


def probe_images_per_sec(config: TrainConfig, data: CifarData, steps: int = PROBE_STEPS) -> float:
    """Training images/s of ``config`` on ``data``: two epochs of ``steps`` steps, the second
    one timed (the engine's own ``images_per_sec``).

    Raises:
        ValueError: the training split holds fewer than ``steps`` batches.
    """
    from cifar_hpo.engine import train

    batch = config.batch_size
    n_train = len(data.train_labels)
    if n_train < steps * batch:
        raise ConfigError(f"{n_train} training images are fewer than {steps} batches of {batch}")
    fraction = min(1.0, (steps * batch + batch // 2) / n_train)
    probe = with_overrides(
        config,
        {
            "epochs": 2,
            "data.train_fraction": fraction,
            "data.val_fraction": 0.0,  # no validation pass: training speed only
            "early_stopping.patience": 0,
        },
    )
    result = train(probe, data, evaluate_test=False)
    return float(result.history[-1]["images_per_sec"])


class ThroughputCache:
    """Measured training images/s per (machine, model config), in one JSON file.

    Args:
        path: the cache file (created on first write).
        measure: ``(config, data) -> images/s``; :func:`probe_images_per_sec` by default.
    """

    def __init__(
        self,
        path: str | Path,
        measure: Callable[[TrainConfig, CifarData], float] = probe_images_per_sec,
    ):
        self.path = Path(path)
        self.measure = measure

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def images_per_sec(self, config: TrainConfig, data: CifarData) -> tuple[float, bool]:
        """(images/s, whether it came from the cache) for ``config`` on this machine."""
        table = self._read()
        machine, model = machine_key(config), model_key(config)
        if model in table.get(machine, {}):
            return float(table[machine][model]), True
        value = float(self.measure(config, data))
        table = self._read()  # another worker may have written meanwhile
        table.setdefault(machine, {})[model] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        tmp.replace(self.path)
        return value, False
