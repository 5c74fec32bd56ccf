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

The steps live in their own modules: opening the study and the worker
(:mod:`~cifar_hpo.sweep.study`), the budget's plan and the race after the search
(:mod:`~cifar_hpo.sweep.budgeted`), the display (:mod:`~cifar_hpo.sweep.progress`) and the
parent run's summary (:mod:`~cifar_hpo.sweep.runs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from cifar_hpo.errors import SweepSpecError, TrackingError
from cifar_hpo.sweep.budgeted import Search, plan_search, run_refit
from cifar_hpo.sweep.champion import (
    ChampionKeeper,
    keep_top_models,
    reconcile_champion,
    reconcile_rule_aliases,
)
from cifar_hpo.sweep.objective import Objective
from cifar_hpo.sweep.progress import printer, sweep_progress, trial_display
from cifar_hpo.sweep.runs import finish_parent, reconcile_runs
from cifar_hpo.sweep.storage import FAIL_REASON_ATTR, fail_stale_trials
from cifar_hpo.sweep.study import PreparedSweep, prepare_sweep, require_stop_rule
from cifar_hpo.tracking import Tracker, tracking_failure

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by TrialBar


@dataclass
class SweepOutcome:
    """What a ``run_sweep`` call did."""

    study: optuna.Study
    parent_run_id: str
    interrupted: bool = False
    new_trials: list[int] = field(default_factory=list)
    failed_workers: list[tuple[int, int]] = field(default_factory=list)  # (index, exit status)


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
    say = printer(console)
    search = plan_search(prep, n_trials, timeout, budget_s, started, overrides, say)
    progress = sweep_progress(console) if show_progress else None
    objective = Objective(
        prep.spec,
        prep.data,
        study_name,
        tracker=prep.tracker,
        parent_run_id=prep.parent_run_id,
        progress=progress,
        overrides=search.overrides,
        evaluate_test=prep.spec.budget.search_test,
    )
    warn = (lambda text: console.print(f"[yellow]{text}[/]")) if console is not None else None
    keeper = ChampionKeeper(prep.tracker, prep.spec.top_k_models, warn, prep.spec.rules)
    callbacks = [*search.callbacks, keeper, _StopOnTrackingError()]
    callbacks += trial_display(progress, console, search.total(n_trials), search.clock)
    interrupted = False
    try:
        if search.runs:
            prep.study.optimize(
                objective,
                n_trials=n_trials,
                timeout=search.timeout,
                catch=(Exception,),
                callbacks=callbacks,
            )
        if progress is not None:
            progress.stop()
            progress = None
        if search.plan is not None and refit:
            run_refit(prep, search.plan, search.clock, overrides, say)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
        if search.clock is not None:
            search.clock.record(prep.study)
    _finish(prep, search, interrupted)
    if search.refused is not None:
        raise SweepSpecError(search.refused)
    return SweepOutcome(prep.study, prep.parent_run_id, interrupted, sorted(objective.numbers))


def _finish(prep: PreparedSweep, search: Search, interrupted: bool) -> None:
    """:func:`finish_sweep`, a lost tracking server raised as one line, the time recorded."""
    try:
        finish_sweep(prep, "KILLED" if interrupted else "FINISHED")
    except Exception as err:
        lost = tracking_failure(err, prep.tracker.tracking_uri)
        if lost is None:
            raise
        raise lost from None  # the study itself is safe in its storage: re-run to continue
    finally:
        if search.clock is not None:
            search.clock.record(prep.study)  # the study summary counts too


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


class _StopOnTrackingError:
    """Optuna study callback: a trial that failed because the tracking server went away stops
    the study (every later trial would fail the same way); the trial is recorded FAIL."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        reason = trial.user_attrs.get(FAIL_REASON_ATTR, "")
        if trial.state == TrialState.FAIL and reason.startswith(TrackingError.__name__):
            study.stop()
