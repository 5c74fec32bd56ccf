"""Opening a study: create or load it in its storage, with a sampler seed that neither a
resumed study nor a parallel worker repeats, refusing a changed search space or objective; and
everything a worker needs before its first trial (:func:`prepare_sweep`).
"""

from __future__ import annotations

import json
import os
import socket
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from cifar_hpo.config import TrainConfig, with_overrides
from cifar_hpo.data import CifarData, load_dataset
from cifar_hpo.errors import SweepSpecError
from cifar_hpo.sweep.budget import BUDGET_ATTR
from cifar_hpo.sweep.runs import reconcile_runs, spec_summary
from cifar_hpo.sweep.spec import SweepSpec, build_pruner, build_sampler, load_spec, objective_text
from cifar_hpo.sweep.storage import SPACE_ATTR, fail_stale_trials, make_storage, storage_kind
from cifar_hpo.tracking import Tracker

PARENT_SETTLE_S = 2.0  # see Tracker.parent_run


def open_study(
    study_name: str,
    spec: SweepSpec,
    storage: str | optuna.storages.BaseStorage | None = None,
    seed: int | None = None,
    worker_index: int | None = None,
    allow_space_change: bool = False,
) -> optuna.Study:
    """Create or load (``load_if_exists``) the study.

    An existing study must have the spec's search space (recorded at creation); a changed one is
    refused (:func:`check_search_space`) unless ``allow_space_change``, which records the new one.

    The sampler seed is offset by the number of existing trials, so a resumed study does not
    repeat its first random samples, and per worker, so parallel workers do not repeat each
    other's: by ``worker_index`` (``--workers K`` numbers its workers) or, on a shared storage
    without one, by host and process id.
    """
    store = storage if isinstance(storage, optuna.storages.BaseStorage) else make_storage(storage)
    try:
        existing = optuna.load_study(study_name=study_name, storage=store)
        n_existing = len(existing.get_trials(deepcopy=False))
    except KeyError:
        n_existing = 0
    sampler_spec = spec.sampler
    if seed is not None or sampler_spec.seed is not None:
        offset = n_existing
        if worker_index is not None:
            offset += 7919 * worker_index
        elif not isinstance(store, optuna.storages.RDBStorage) or not store.url.startswith(
            "sqlite"
        ):
            offset += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_003
        base_seed = seed if seed is not None else sampler_spec.seed
        sampler_spec = sampler_spec.model_copy(update={"seed": (base_seed + offset) % 2**31})
    sampler = build_sampler(spec.model_copy(update={"sampler": sampler_spec}))
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        sampler=sampler,
        pruner=build_pruner(spec),
        directions=spec.directions,
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != spec.directions or (
        study.metric_names and study.metric_names != spec.metric_names
    ):
        names = study.metric_names or ["?"] * len(stored)
        had = ", ".join(f"{d} {n}" for d, n in zip(stored, names, strict=True))
        raise SweepSpecError(
            f"study {study_name!r} exists with objectives [{had}], but the spec says "
            f"[{objective_text(spec)}]; use a new study name"
        )
    check_search_space(study, spec, allow_space_change)
    if study.metric_names != spec.metric_names:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(spec.metric_names)  # dashboards show "val_acc"
    if n_existing == 0:
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def check_search_space(study: optuna.Study, spec: SweepSpec, allow_change: bool = False) -> None:
    """Record the spec's search space on ``study``, or refuse a study created with another one.

    Studies from before the space was recorded take the current one.

    Raises:
        SweepSpecError: the recorded space differs (names the parameters) and ``allow_change``
            is False.
    """
    space = json.loads(
        json.dumps({name: p.model_dump(mode="json") for name, p in spec.space.items()})
    )
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded == space:
        return
    if recorded is not None and not allow_change:
        differ = sorted(k for k in {*recorded, *space} if recorded.get(k) != space.get(k))
        raise SweepSpecError(
            f"study {study.study_name!r} exists with another search space (differs in: "
            f"{', '.join(differ)}); use a new study name, or --allow-space-change to continue it"
        )
    study.set_user_attr(SPACE_ATTR, space)


def require_stop_rule(
    study_name: str,
    sweeps_dir,
    n_trials: int | None,
    timeout: float | None,
    budget_s: float | None,
    storage: str | optuna.storages.BaseStorage | None = None,
) -> None:
    """A sweep needs a way to end: trials, a timeout, or a budget (flag, study file, or the
    budget an existing study recorded).

    Raises:
        SweepSpecError: none of them (one line saying what to give), or an invalid spec.
    """
    if n_trials is not None or timeout is not None or budget_s is not None:
        return
    if load_spec(study_name, sweeps_dir).budget.minutes is not None:
        return
    store = storage if isinstance(storage, optuna.storages.BaseStorage) else make_storage(storage)
    try:
        recorded = optuna.load_study(study_name=study_name, storage=store).user_attrs
    except KeyError:
        recorded = {}
    if BUDGET_ATTR not in recorded:
        raise SweepSpecError(
            "give --trials N, --timeout SECONDS or --budget DURATION (e.g. 60m), or set "
            f"budget.minutes in sweeps/{study_name}.yaml"
        )


@dataclass
class PreparedSweep:
    """Everything a worker needs before its first trial (see :func:`prepare_sweep`)."""

    spec: SweepSpec
    data: CifarData
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    tracker: Tracker
    parent_run_id: str


def base_config(prep: PreparedSweep, overrides: dict[str, Any] | None) -> TrainConfig:
    """The spec's base config (budget applied) with this call's dotted ``overrides``."""
    base = prep.spec.base_config()
    return with_overrides(base, overrides) if overrides else base


def prepare_sweep(
    study_name: str,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    seed: int | None = None,
    sweeps_dir: str | Path = "sweeps",
    data_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    worker_index: int | None = None,
    allow_space_change: bool = False,
    tracker: Tracker | None = None,
) -> PreparedSweep:
    """Validate the spec, check the tracking server, load the data, open the study, recover
    from killed workers (fail their stale trials, then close their MLflow runs) and get the
    study's one parent run.

    Raises:
        SweepSpecError: invalid spec, storage or study name (before any trial starts).
        TrackingError: the MLflow tracking server does not answer (within seconds).
        DatasetError: the dataset is missing.
    """
    spec = load_spec(study_name, sweeps_dir)
    base = spec.base_config()
    if overrides:
        base = with_overrides(base, overrides)
    tracker = tracker if tracker is not None else Tracker(tracking_uri)
    data = load_dataset(base.data.dataset, base.data.data_dir or data_dir)
    store = storage if isinstance(storage, optuna.storages.BaseStorage) else make_storage(storage)
    study = open_study(study_name, spec, store, seed, worker_index, allow_space_change)
    fail_stale_trials(study, store)
    reconcile_runs(study, tracker)
    # one process at a time on SQLite: no other worker can race for the parent run
    if isinstance(store, optuna.storages.RDBStorage):
        url = store.url
    else:
        url = storage if isinstance(storage, str) or storage is None else "journal:"
    settle = 0.0 if storage_kind(url) == "sqlite" else PARENT_SETTLE_S
    parent = tracker.parent_run(study, spec_summary(study_name, spec), settle=settle)
    return PreparedSweep(spec, data, study, store, tracker, parent)
