"""Running a study: storage, objective with pruning and MLflow tracking, champion promotion.

``run_sweep`` is what ``cifar-hpo sweep`` calls. Each trial samples the spec's search space,
trains with the shared core, reports validation metrics per epoch to Optuna's pruner, and is
tracked as a nested MLflow run. A failing or diverging trial ends FAIL (reason recorded) and the
study goes on; Ctrl-C marks the running trial and returns; re-running continues the study.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cifar_hpo.callbacks import Callback
from cifar_hpo.config import with_overrides
from cifar_hpo.data import CifarData, load_dataset
from cifar_hpo.engine import Result, TrainState, train
from cifar_hpo.sweep.report import best_trial, state_counts
from cifar_hpo.sweep.spec import (
    SweepSpec,
    SweepSpecError,
    build_pruner,
    build_sampler,
    load_spec,
    suggest,
)
from cifar_hpo.tracking import PARENT_RUN_ATTR, Tracker, TrialRun, promote_champion

DEFAULT_STORAGE_DIR = Path("studies")
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"
METRIC_KEYS = {"val_acc": "acc", "val_loss": "loss", "val_f1_macro": "f1_macro", "val_top5": "top5"}

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by _TrialBar


class TrialFailed(Exception):
    """A trial could not produce a value (for example a non-finite loss)."""


def default_storage_url(storage_dir: str | Path = DEFAULT_STORAGE_DIR) -> str:
    """The embedded default: one SQLite file ``studies/optuna.db``."""
    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(storage_dir) / 'optuna.db'}"


def make_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL.

    * None: SQLite under ``studies/``.
    * ``journal:PATH`` or a path ending in ``.log``/``.journal``: Optuna's journal file storage
      (several processes on one machine).
    * any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``): RDB storage with a heartbeat,
      so trials of killed workers are failed and retried (``RetryFailedTrialCallback``).

    Raises:
        SweepSpecError: an unparsable or unreachable URL (one line).
    """
    url = url or default_storage_url()
    journal = url.removeprefix("journal:") if url.startswith("journal:") else None
    if journal is None and url.endswith((".log", ".journal")) and "://" not in url:
        journal = url
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(journal))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=30,
                grace_period=90,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
            )
    except Exception as err:  # sqlalchemy raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SweepSpecError(f"cannot open Optuna storage {url!r}: {first}") from None


class PruningCallback(Callback):
    """Reports ``metric`` each epoch (``trial.report(value, epoch)``) and raises
    ``optuna.TrialPruned`` when the study's pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, record["epoch"])
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_epoch", record["epoch"])
            raise optuna.TrialPruned(
                f"pruned at epoch {record['epoch']} ({self.metric}={value:.4f})"
            )


@dataclass
class SweepOutcome:
    """What a ``run_sweep`` call did."""

    study: optuna.Study
    parent_run_id: str
    interrupted: bool = False
    new_trials: list[int] = field(default_factory=list)


class Objective:
    """The Optuna objective: sample -> config -> train (pruned, tracked) -> validation metric."""

    def __init__(
        self,
        spec: SweepSpec,
        data: CifarData,
        tracker: Tracker,
        study_name: str,
        parent_run_id: str,
        progress: Progress | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        self.spec = spec
        self.data = data
        self.tracker = tracker
        self.study_name = study_name
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.base = spec.base_config()
        if overrides:
            self.base = with_overrides(self.base, overrides)
        self.metric = spec.objective.metric
        self.maximize = spec.objective.direction == "maximize"

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.spec)
        config = with_overrides(self.base, params)
        run = self.tracker.start_trial(self.study_name, self.parent_run_id, trial.number, config)
        trial.set_user_attr(RUN_ID_ATTR, run.run_id)
        callbacks: list[Callback] = [PruningCallback(trial, self.metric), run]
        bar = None
        if self.progress is not None:
            from cifar_hpo.progress import RichProgress

            bar = RichProgress(progress=self.progress, label=f"trial {trial.number}")
            callbacks.append(bar)
        try:
            result = train(config, self.data, callbacks)
        except optuna.TrialPruned as err:
            run.end("KILLED", "PRUNED", str(err))
            raise
        except KeyboardInterrupt:
            run.end("KILLED", "FAIL", "interrupted (Ctrl-C/SIGTERM)")
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            run.end("FAILED", "FAIL", reason)
            raise
        finally:
            if bar is not None:
                bar.close()
        return self._complete(trial, run, result)

    def _complete(self, trial: optuna.Trial, run: TrialRun, result: Result) -> float:
        try:
            run.log_result(result)
            if result.status == "diverged" or result.val is None:
                reason = result.message or "no validation split: set data.val_fraction > 0"
                trial.set_user_attr(FAIL_REASON_ATTR, reason)
                run.end("FAILED", "FAIL", reason)
                raise TrialFailed(reason)
            value = float(result.val.metrics[METRIC_KEYS[self.metric]])
            if result.test is not None:
                trial.set_user_attr("test_acc", result.test.metrics["acc"])
                trial.set_user_attr("test_f1_macro", result.test.metrics["f1_macro"])
            trial.set_user_attr("epochs_run", len(result.history))
            trial.set_user_attr("images_seen", result.images_seen)
            trial.set_user_attr("seconds", result.seconds)
            rank, beats_best = self._rank(trial, value)
            if rank < self.spec.top_k_models or beats_best:
                model_uri = run.log_model(result, self.data.mean, self.data.std)
                if beats_best:
                    version = promote_champion(
                        self.tracker,
                        self.study_name,
                        run.run_id,
                        model_uri,
                        {
                            "study": self.study_name,
                            "trial": trial.number,
                            "metric": self.metric,
                            "value": value,
                        },
                    )
                    trial.set_user_attr("registry_version", version)
                    run.set_tags({"cifar_hpo.champion_version": version})
            run.end("FINISHED", "COMPLETE")
            return value
        except TrialFailed:
            raise
        except BaseException as err:
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            run.end("FAILED", "FAIL", reason)
            raise

    def _rank(self, trial: optuna.Trial, value: float) -> tuple[int, bool]:
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        values = [t.value for t in done if t.value is not None]
        better = [v for v in values if (v > value if self.maximize else v < value)]
        best_so_far = (max if self.maximize else min)(values) if values else None
        beats = best_so_far is None or (
            value > best_so_far if self.maximize else value < best_so_far
        )
        return len(better), beats


def reconcile_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Close MLflow runs left RUNNING by killed workers: a trial that Optuna no longer has
    RUNNING gets its run terminated with the matching status. Returns how many were fixed."""
    fixed = 0
    status_of = {
        TrialState.COMPLETE: "FINISHED",
        TrialState.PRUNED: "KILLED",
        TrialState.FAIL: "FAILED",
    }
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get(RUN_ID_ATTR)
        if not run_id or t.state not in status_of:
            continue
        try:
            run = tracker.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - run deleted by the user
            continue
        if run.info.status == "RUNNING":
            TrialRun(tracker, run_id).end(
                status_of[t.state], t.state.name, "worker stopped before closing this run"
            )
            fixed += 1
    return fixed


def open_study(
    study_name: str, spec: SweepSpec, storage: str | None = None, seed: int | None = None
) -> optuna.Study:
    """Create or load (``load_if_exists``) the study; the sampler seed is offset by the number
    of existing trials so a resumed study does not repeat its first random samples."""
    store = make_storage(storage)
    try:
        existing = optuna.load_study(study_name=study_name, storage=store)
        n_existing = len(existing.get_trials(deepcopy=False))
    except KeyError:
        n_existing = 0
    sampler_spec = spec.sampler
    if seed is not None or sampler_spec.seed is not None:
        sampler_spec = sampler_spec.model_copy(
            update={"seed": (seed if seed is not None else sampler_spec.seed) + n_existing}
        )
    sampler = build_sampler(spec.model_copy(update={"sampler": sampler_spec}))
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        sampler=sampler,
        pruner=build_pruner(spec),
        direction=spec.objective.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != spec.objective.direction:
        raise SweepSpecError(
            f"study {study_name!r} exists with direction {study.direction.name.lower()}, "
            f"but the spec says {spec.objective.direction}"
        )
    if n_existing == 0:
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def run_sweep(
    study_name: str,
    n_trials: int | None,
    *,
    timeout: float | None = None,
    storage: str | None = None,
    seed: int | None = None,
    sweeps_dir: str | Path = "sweeps",
    data_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> SweepOutcome:
    """Run ``n_trials`` more trials (or until ``timeout`` seconds) of ``sweeps/<study>.yaml``.

    Raises:
        SweepSpecError: invalid spec, storage or study name (before any trial starts).
        DatasetError: the dataset is missing.
    """
    spec = load_spec(study_name, sweeps_dir)
    base = spec.base_config()
    if overrides:
        base = with_overrides(base, overrides)
    data = load_dataset(base.data.dataset, base.data.data_dir or data_dir)
    study = open_study(study_name, spec, storage, seed)
    tracker = Tracker(tracking_uri)
    reconcile_runs(study, tracker)
    summary = {
        "study": study_name,
        "objective": f"{spec.objective.direction} {spec.objective.metric}",
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "budget.epochs": spec.budget.epochs,
        "budget.train_fraction": spec.budget.train_fraction,
        "search_space": ", ".join(spec.space),
    }
    parent = tracker.parent_run(study, summary)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    progress = _sweep_progress(console) if show_progress else None
    objective = Objective(spec, data, tracker, study_name, parent, progress, overrides)
    interrupted = False
    callbacks = []
    if progress is not None:
        task = progress.add_task("trials", total=n_trials, info="")
        callbacks.append(_TrialBar(progress, task))
        progress.start()
    try:
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, catch=(Exception,), callbacks=callbacks
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
    tracker.finish_parent(study, parent, status="KILLED" if interrupted else "FINISHED")
    new = sorted(t.number for t in study.get_trials(deepcopy=False) if t.number not in before)
    return SweepOutcome(study, study.user_attrs[PARENT_RUN_ATTR], interrupted, new)


def _sweep_progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


class _TrialBar:
    """Optuna study callback updating the trial bar: done/pruned/failed and best so far."""

    def __init__(self, progress: Progress, task):
        self.progress = progress
        self.task = task
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
            + (f"  best {best.value:.4f} (trial {best.number})" if best else "")
        )
        self.progress.update(self.task, completed=self.done, info=info)
