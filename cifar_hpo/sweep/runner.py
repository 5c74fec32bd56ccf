"""Running a study: open it, prepare a worker, run trials, close what is left open.

``run_sweep`` is what ``cifar-hpo sweep`` calls (and what each ``--workers`` process calls).
Each trial is an :class:`~cifar_hpo.sweep.objective.Objective` call: sample the spec's search
space, train with the shared core, report validation metrics per epoch to Optuna's pruner, track
it as a nested MLflow run. A failing or diverging trial ends FAIL (reason recorded) and the
study goes on; Ctrl-C marks the running trial and returns; re-running continues the study.
After each trial the :class:`~cifar_hpo.sweep.champion.ChampionKeeper` keeps the top-k models
and the ``champion`` alias on the study's best.

Several workers (processes or machines) may run the same study at once on a shared storage
(PostgreSQL, or a journal file on one machine; see :mod:`cifar_hpo.sweep.storage`): each one
fails the trials of killed workers, closes their MLflow runs, and nests its own trials under the
study's one parent run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import Progress

from cifar_hpo.config import ConfigError, TrainConfig, with_overrides
from cifar_hpo.data import CifarData, load_dataset
from cifar_hpo.engine import make_splits
from cifar_hpo.errors import SweepSpecError, TrackingError
from cifar_hpo.sweep.budget import (
    BUDGET_ATTR,
    BudgetClock,
    BudgetStop,
    budget_clock,
    format_minutes,
)
from cifar_hpo.sweep.champion import (
    ChampionKeeper,
    keep_top_models,
    reconcile_champion,
    reconcile_rule_aliases,
)
from cifar_hpo.sweep.finalists import RACE_ATTR, race_after_search, race_metrics
from cifar_hpo.sweep.objective import Objective
from cifar_hpo.sweep.plan import SweepPlan, plan_sweep
from cifar_hpo.sweep.ranking import primary_value
from cifar_hpo.sweep.refit import REFERENCE_REFIT_ATTR, REFIT_ATTR, refit_config
from cifar_hpo.sweep.report import best_trial, state_counts, study_plots, study_summary
from cifar_hpo.sweep.spec import SweepSpec, build_pruner, build_sampler, load_spec
from cifar_hpo.sweep.storage import (
    DEFAULT_STORAGE_DIR,
    FAIL_REASON_ATTR,
    RUN_ID_ATTR,
    SPACE_ATTR,
    fail_stale_trials,
    make_storage,
    storage_kind,
)
from cifar_hpo.throughput import ThroughputCache
from cifar_hpo.tracking import RunOutcome, Tracker, TrialRun, tracking_failure
from cifar_hpo.tta import tta_passes

PARENT_SETTLE_S = 2.0  # see Tracker.parent_run

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by _TrialBar


@dataclass
class SweepOutcome:
    """What a ``run_sweep`` call did."""

    study: optuna.Study
    parent_run_id: str
    interrupted: bool = False
    new_trials: list[int] = field(default_factory=list)
    failed_workers: list[tuple[int, int]] = field(default_factory=list)  # (index, exit status)


def reconcile_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Close MLflow runs left RUNNING by killed workers: a trial run whose Optuna trial is no
    longer RUNNING is terminated with the matching outcome (FAILED for a failed trial). Run this
    after :func:`~cifar_hpo.sweep.storage.fail_stale_trials`. Returns how many were fixed."""
    running = tracker.running_trial_runs(study.study_name)
    if not running:
        return 0
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    fixed = 0
    for run_id, number in running:
        t = trials.get(number)
        outcome = RunOutcome.of_trial_state(t.state.name) if t is not None else None
        if outcome is None:
            continue  # still running somewhere, or not this study's trial
        if t.user_attrs.get(RUN_ID_ATTR, run_id) != run_id:
            continue  # the trial's own run is another one
        reason = t.user_attrs.get(FAIL_REASON_ATTR) or "worker stopped before closing this run"
        run = TrialRun(tracker, run_id)
        run.is_trial = True
        run.end(outcome, reason)
        fixed += 1
    return fixed


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


@dataclass
class PreparedSweep:
    """Everything a worker needs before its first trial (see :func:`prepare_sweep`)."""

    spec: SweepSpec
    data: CifarData
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    tracker: Tracker
    parent_run_id: str


def objective_text(spec: SweepSpec) -> str:
    """``maximize val_acc, minimize params``."""
    return ", ".join(f"{o.direction} {o.metric}" for o in spec.objective)


def spec_summary(study_name: str, spec: SweepSpec) -> dict[str, Any]:
    """The parent run's params: objectives, constraints, rules, sampler, pruner, budget and the
    searched names."""
    extra: dict[str, Any] = {}
    if spec.constraints:
        extra["constraints"] = json.dumps(
            {k: v.model_dump(exclude_none=True) for k, v in spec.constraints.items()}
        )
    if spec.rules:
        extra["rules"] = ", ".join(spec.rules)
    return {
        **extra,
        "study": study_name,
        "objective": objective_text(spec),
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "budget.epochs": spec.budget.epochs,
        "budget.train_fraction": spec.budget.train_fraction,
        "top_k_models": spec.top_k_models,
        "search_space": ", ".join(spec.space),
    }


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


def run_sweep(
    study_name: str,
    n_trials: int | None,
    *,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    seed: int | None = None,
    sweeps_dir: str | Path = "sweeps",
    data_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    worker_index: int | None = None,
    allow_space_change: bool = False,
    tracker: Tracker | None = None,
    budget_s: float | None = None,
    refit: bool = True,
) -> SweepOutcome:
    """Run ``n_trials`` more trials (or until ``timeout`` seconds) of ``sweeps/<study>.yaml``;
    with a time budget (``budget_s``, or the spec's ``budget.minutes``, or the budget a resumed
    study recorded), plan the study on this machine's measured speed, search for the planned
    share of the budget, then refit the best configuration at full fidelity as the champion
    (``refit=False``: search only, as ``--workers`` processes do; the launcher refits).

    Other workers may run the same study at the same time on a shared storage. At the end the
    worker fails and closes what killed workers left RUNNING, keeps the top-k models and the
    ``champion`` alias on the study's best, and finishes the parent run with the study summary
    and Optuna's plots (the parent run is never left RUNNING, even when that logging fails).

    Raises:
        SweepSpecError: invalid spec, storage or study name (before any trial starts).
        TrackingError: the MLflow tracking server does not answer (before any trial starts).
        DatasetError: the dataset is missing.
    """
    started = time.monotonic()  # the budget counts from here: opening and loading included
    require_stop_rule(study_name, sweeps_dir, n_trials, timeout, budget_s, storage)
    prep = prepare_sweep(
        study_name,
        storage=storage,
        seed=seed,
        sweeps_dir=sweeps_dir,
        data_dir=data_dir,
        tracking_uri=tracking_uri,
        overrides=overrides,
        worker_index=worker_index,
        allow_space_change=allow_space_change,
        tracker=tracker,
    )
    study, tracker, parent = prep.study, prep.tracker, prep.parent_run_id
    say = _printer(console)
    given_budget_s = budget_s
    if budget_s is None and prep.spec.budget.minutes:
        budget_s = prep.spec.budget.minutes * 60
    clock = budget_clock(study, budget_s, started)
    speeds = measure_speeds(prep, overrides, say)
    refused = None
    if clock is not None and clock.used_up:
        refused = used_up_text(prep, speeds, clock, given_budget_s, overrides)
        if given_budget_s is None:  # a resumed study's own budget: nothing to do, not an error
            say(f"study {study_name}: {refused}")
            refused = None
    plan = None
    trial_overrides = dict(overrides or {})
    callbacks: list = []
    if clock is not None and not clock.used_up:
        plan = plan_study(prep, speeds, clock.left_s, overrides)
        for line in plan.lines():
            say(line)
        trial_overrides["data.train_fraction"] = plan.train_fraction
        if plan.epochs < _base(prep, overrides).epochs:  # lowered to fit the budget
            trial_overrides["epochs"] = plan.epochs
        study.pruner = planned_pruner(prep.spec, plan)
        search_end = clock.used_s + plan.search_s
        timeout = min(timeout or math.inf, max(1.0, plan.search_s))
        callbacks.append(BudgetStop(clock, search_end, plan.trial_s))
    elif clock is None:
        say(estimate_text(prep, speeds, n_trials, timeout, overrides))
    progress = _sweep_progress(console) if show_progress else None
    objective = Objective(
        prep.spec,
        prep.data,
        study_name,
        tracker=tracker,
        parent_run_id=parent,
        progress=progress,
        overrides=trial_overrides,
    )
    warn = (lambda text: console.print(f"[yellow]{text}[/]")) if console is not None else None
    keeper = ChampionKeeper(tracker, prep.spec.top_k_models, warn, prep.spec.rules)
    callbacks += [keeper, _StopOnTrackingError()]
    if progress is not None:
        total = (
            n_trials
            if plan is None
            else min(n_trials or plan.expected_trials, plan.expected_trials)
        )
        task = progress.add_task("trials", total=total, info="")
        callbacks.append(_TrialBar(progress, task, clock))
        progress.start()
    elif console is not None:
        callbacks.append(_TrialLog(console, clock))
    interrupted = False
    try:
        if clock is None or not clock.used_up:
            study.optimize(
                objective,
                n_trials=n_trials,
                timeout=timeout,
                catch=(Exception,),
                callbacks=callbacks,
            )
        if progress is not None:
            progress.stop()
            progress = None
        if plan is not None and refit:
            run_refit(prep, plan, clock, overrides, say)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
        if clock is not None:
            clock.record(study)
    try:
        finish_sweep(prep, "KILLED" if interrupted else "FINISHED")
    except Exception as err:
        lost = tracking_failure(err, tracker.tracking_uri)
        if lost is None:
            raise
        raise lost from None  # the study itself is safe in its storage: re-run to continue
    finally:
        if clock is not None:
            clock.record(study)  # the study summary counts too
    if refused is not None:
        raise SweepSpecError(refused)
    return SweepOutcome(study, parent, interrupted, sorted(objective.numbers))


def finish_sweep(prep: PreparedSweep, status: str) -> None:
    """What every worker does at the end: fail and close the trials of killed workers, keep
    the top-k models and the champion on the study's best, and finish the parent run with the
    study summary and plots."""
    study, tracker = prep.study, prep.tracker
    try:
        # trials of other workers failed by the heartbeat meanwhile: close their runs too
        fail_stale_trials(study, prep.storage)
        reconcile_runs(study, tracker)
        keep_top_models(study, tracker, prep.spec.top_k_models, prep.spec.rules)
        reconcile_champion(study, tracker)
        reconcile_rule_aliases(study, tracker, prep.spec.rules)
    finally:
        finish_parent(study, tracker, prep.parent_run_id, status)


def finish_parent(study: optuna.Study, tracker: Tracker, run_id: str, status: str) -> None:
    """Log the study summary (trial counts, best value) and Optuna's plots to the parent run
    and set its status; the status is set even if the summary or a plot fails."""
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            summary = study_summary(study)
            metrics = {f"trials_{s.lower()}": n for s, n in summary["counts"].items()}
            if summary["best_value"] is not None:
                metrics["best_value"] = summary["best_value"]
            for attr, prefix in ((REFIT_ATTR, "refit"), (REFERENCE_REFIT_ATTR, "reference_refit")):
                refit = study.user_attrs.get(attr) or {}
                for key in ("search_value", "val_acc", "test_acc", "epochs"):
                    if refit.get(key) is not None:
                        metrics[f"{prefix}_{key}"] = float(refit[key])
            race = study.user_attrs.get(RACE_ATTR)
            if race:  # the finalists' race and its statistics: metrics and a JSON artifact
                metrics.update(race_metrics(race))
                Path(tmp, "race.json").write_text(json.dumps(race, indent=1, default=str))
            Path(tmp, "study_summary.json").write_text(json.dumps(summary, indent=1, default=str))
            if summary["pareto_front"] is not None:  # the front as its own table
                front = json.dumps(summary["pareto_front"], indent=1, default=str)
                Path(tmp, "pareto_front.json").write_text(front)
            study_plots(study, Path(tmp) / "plots")
        except Exception as err:  # noqa: BLE001 - the run is closed below whatever happens
            warnings.warn(f"study summary incomplete: {err}", stacklevel=2)
        tracker.finish_run(run_id, status, metrics, tmp)


class _StopOnTrackingError:
    """Optuna study callback: a trial that failed because the tracking server went away stops
    the study (every later trial would fail the same way); the trial is recorded FAIL."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        reason = trial.user_attrs.get(FAIL_REASON_ATTR, "")
        if trial.state == TrialState.FAIL and reason.startswith(TrackingError.__name__):
            study.stop()


def architectures(prep: PreparedSweep, overrides: dict[str, Any] | None) -> list[TrainConfig]:
    """One config per architecture the study can sample (``model.name`` choices, else the
    base model), with the base config's model hyperparameters where the model takes them (so
    ``model.width: 0.3`` is probed at width 0.3, not at the model's default), at the base
    config's batch size or the middle ``batch_size`` choice."""
    base = _base(prep, overrides)
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


def _base(prep: PreparedSweep, overrides) -> TrainConfig:
    base = prep.spec.base_config()
    return with_overrides(base, overrides) if overrides else base


def _split_sizes(prep: PreparedSweep, overrides, holdout: bool = True) -> tuple[int, int]:
    """(images of the whole training split, validation images), as a refit splits them
    (``holdout=False``: the hold-out trains too, no validation images)."""
    full = refit_config(_base(prep, overrides), {}, 1.0, holdout=holdout)
    splits = make_splits(full, prep.data)
    return len(splits.train_idx), len(splits.val_idx)


def plan_study(prep: PreparedSweep, speeds, budget_s: float, overrides) -> SweepPlan:
    """The plan of this budgeted call (see :func:`cifar_hpo.sweep.plan.plan_sweep`)."""
    spec, base = prep.spec, _base(prep, overrides)
    train_images, val_images = _split_sizes(prep, overrides)
    return plan_sweep(
        budget_s,
        images_per_sec=speeds,
        epochs=max(1, math.ceil(base.epochs)),
        train_images=train_images,
        train_fraction=base.data.train_fraction,
        val_images=val_images,
        tta_passes=tta_passes(base.tta),
        pruner=spec.pruner.name,
        min_resource=spec.pruner.min_resource,
        reduction_factor=spec.pruner.reduction_factor,
        refit_epochs=spec.budget.refit_epochs or spec.budget.epochs,
        refit_share=spec.budget.refit_share,
        refit_runs=2 if spec.budget.refit_reference and spec.enqueue else 1,
        refit_holdout=spec.budget.refit_holdout,
        refit_min_epochs=spec.budget.refit_min_epochs,
        finalists=spec.refit.finalists,
        seeds=spec.refit.seeds,
        test_images=len(prep.data.test_labels),
        fidelity=spec.budget.fidelity,
    )


def planned_pruner(spec: SweepSpec, plan: SweepPlan) -> optuna.pruners.BasePruner:
    """The spec's pruner with the plan's rungs (min resource, reduction factor, max epochs);
    none for ``complete`` search fidelity (trials are ranked where their schedules end)."""
    if spec.budget.fidelity == "complete":
        return optuna.pruners.NopPruner()
    pruner = spec.pruner.model_copy(
        update={"min_resource": plan.rungs[0], "reduction_factor": plan.reduction_factor}
    )
    budget = spec.budget.model_copy(update={"epochs": plan.epochs})
    return build_pruner(spec.model_copy(update={"pruner": pruner, "budget": budget}))


def used_up_text(prep: PreparedSweep, speeds, clock: BudgetClock, given_s, overrides) -> str:
    """Why a budgeted call runs nothing: the budget is used up, and how much one trial needs
    on this machine (from the plan's cost model at the measured speeds)."""
    one = plan_study(prep, speeds, 3600.0, overrides).trial_s
    need = format_minutes(clock.used_s + max(one, 0.05 * clock.total_s) / 0.95 + 1)
    if given_s is None:
        return f"its budget is used up ({clock.text()}); give --budget {need} or more to extend"
    return (
        f"--budget {format_minutes(given_s)}: {format_minutes(clock.used_s)} of it are used "
        f"already, nothing is left for a trial (one needs ~{format_minutes(one)} on this "
        f"machine); give --budget {need} or more"
    )


def estimate_text(prep: PreparedSweep, speeds, n_trials, timeout, overrides) -> str:
    """Before trial 1 of a sweep without a budget: its expected duration on this machine."""
    plan = plan_study(prep, speeds, 3600.0, overrides)  # only the per-trial costs are used
    if n_trials is None:
        return f"estimate: ~{format_minutes(plan.trial_s)} a trial on this machine"
    total = format_minutes(n_trials * plan.trial_s)
    bound = f", stopping after {format_minutes(timeout)}" if timeout else ""
    return (
        f"estimate: {n_trials} trials x ~{format_minutes(plan.trial_s)} = ~{total} on this "
        f"machine{bound} (--budget 30m, say, fits the study to your time instead)"
    )


def run_refit(prep: PreparedSweep, plan: SweepPlan, clock: BudgetClock, overrides, say) -> None:
    """After the search: race the finalists and the reference recipe in the time the budget
    left, and promote the champion (:func:`cifar_hpo.sweep.finalists.race_after_search`)."""
    holdout = prep.spec.budget.refit_holdout
    train_images, val_images = _split_sizes(prep, overrides, holdout)
    race_after_search(
        prep.study,
        prep.spec,
        _base(prep, overrides),
        prep.data,
        plan,
        clock,
        tracker=prep.tracker,
        parent_run_id=prep.parent_run_id,
        train_images=train_images,
        val_images=val_images,
        say=say,
    )


def _printer(console: Console | None):
    """``say(text)``: one unwrapped plain line on ``console`` (nothing without one)."""
    if console is None:
        return lambda text: None
    return lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False)


def _sweep_progress(console: Console | None) -> Progress:
    from cifar_hpo.progress import make_progress

    return make_progress(console)


class _TrialLog:
    """Optuna study callback printing one line per finished trial (when there is no bar)."""

    def __init__(self, console: Console, clock: BudgetClock | None = None):
        self.console = console
        self.clock = clock

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name.lower()
        if trial.state == TrialState.COMPLETE:
            state += " " + ", ".join(f"{v:.4g}" for v in trial.values)
        elif trial.state == TrialState.FAIL:
            state += f": {trial.user_attrs.get(FAIL_REASON_ATTR, 'see the MLflow run')}"
        if self.clock is not None:
            state += f" ({self.clock.text()})"
        self.console.print(f"trial {trial.number} {state}", highlight=False, markup=False)


class _TrialBar:
    """Optuna study callback updating the trial bar: done/pruned/failed and best so far."""

    def __init__(self, progress: Progress, task, clock: BudgetClock | None = None):
        self.progress = progress
        self.task = task
        self.clock = clock
        self.done = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.done += 1
        if trial.state == TrialState.FAIL:
            reason = trial.user_attrs.get(FAIL_REASON_ATTR, "see the MLflow run")
            self.progress.console.print(f"[yellow]trial {trial.number} failed:[/] {reason}")
        counts = state_counts(study)
        best = best_trial(study)
        info = (
            f"complete {counts['COMPLETE']}  pruned {counts['PRUNED']}  failed {counts['FAIL']}"
            + (f"  best {primary_value(best):.4f} (trial {best.number})" if best else "")
            + (f"  {self.clock.text()}" if self.clock is not None else "")
        )
        self.progress.update(self.task, completed=self.done, info=info)
