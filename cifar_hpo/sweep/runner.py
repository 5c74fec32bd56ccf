"""Running a study: storage, objective with pruning and MLflow tracking, champion promotion.

``run_sweep`` is what ``cifar-hpo sweep`` calls. Each trial samples the spec's search space,
trains with the shared core, reports validation metrics per epoch to Optuna's pruner, and is
tracked as a nested MLflow run. A failing or diverging trial ends FAIL (reason recorded) and the
study goes on; Ctrl-C marks the running trial and returns; re-running continues the study.

Several workers (processes or machines) may run the same study at once on a shared storage
(PostgreSQL, or a journal file on one machine; see :mod:`cifar_hpo.sweep.workers`): each one
fails the trials of killed workers, closes their MLflow runs, and nests its own trials under the
study's one parent run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import Progress

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import CheckpointError, load_checkpoint
from cifar_hpo.config import with_overrides
from cifar_hpo.data import CifarData, load_dataset
from cifar_hpo.engine import Result, TrainState, make_splits, train
from cifar_hpo.sweep.report import best_trial, state_counts
from cifar_hpo.sweep.spec import (
    SweepSpec,
    SweepSpecError,
    build_pruner,
    build_sampler,
    load_spec,
    suggest,
)
from cifar_hpo.sweep.workers import worker_identity
from cifar_hpo.tracking import (
    Tracker,
    TrialRun,
    experiment_name,
    promote_champion,
)

DEFAULT_STORAGE_DIR = Path("studies")
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"
#: study user attribute holding the search space it was created with (JSON of the spec's space)
SPACE_ATTR = "search_space"
WORKER_ATTR = "worker"  # {"host", "pid", "started", "trial"}: who runs the trial
HEARTBEAT_ENV = ("CIFAR_HPO_HEARTBEAT_INTERVAL", 30)  # seconds between a trial's heartbeats
GRACE_ENV = ("CIFAR_HPO_HEARTBEAT_GRACE", 90)  # seconds without one before a trial is stale
PARENT_SETTLE_S = 2.0  # see Tracker.parent_run
METRIC_KEYS = {"val_acc": "acc", "val_loss": "loss", "val_f1_macro": "f1_macro", "val_top5": "top5"}

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by _TrialBar


class TrialFailed(Exception):
    """A trial could not produce a value (for example a non-finite loss)."""


def default_storage_url(storage_dir: str | Path = DEFAULT_STORAGE_DIR) -> str:
    """The embedded default: one SQLite file ``studies/optuna.db``."""
    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(storage_dir) / 'optuna.db'}"


def journal_path(url: str) -> str | None:
    """The file of a journal storage URL (``journal:PATH`` or a ``.log``/``.journal`` path)."""
    if url.startswith("journal:"):
        return url.removeprefix("journal:")
    if url.endswith((".log", ".journal")) and "://" not in url:
        return url
    return None


def storage_kind(url: str | None) -> str:
    """``"sqlite"`` (the default; one process at a time), ``"journal"`` or ``"rdb"``."""
    url = url or default_storage_url()
    if journal_path(url) is not None:
        return "journal"
    return "sqlite" if url.startswith("sqlite") else "rdb"


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in whole seconds, from ``CIFAR_HPO_HEARTBEAT_INTERVAL``
    (default 30) and ``CIFAR_HPO_HEARTBEAT_GRACE`` (default 90).

    Raises:
        SweepSpecError: a value that is not a whole number >= 1, or grace <= interval.
    """
    values = []
    for name, default in (HEARTBEAT_ENV, GRACE_ENV):
        raw = os.environ.get(name, "").strip() or str(default)
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise SweepSpecError(f"{name}={raw!r}: expected a whole number of seconds >= 1")
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise SweepSpecError(
            f"{GRACE_ENV[0]}={grace} must be greater than {HEARTBEAT_ENV[0]}={interval}"
        )
    return interval, grace


class RetryStaleTrial:
    """Optuna's ``RetryHeartbeatStaleTrialCallback``, minus the killed attempt's user attributes
    (its MLflow run id, worker, failure reason): the retry starts clean. The retry's system
    attributes hold ``failed_trial`` and ``retry_history`` as Optuna documents them."""

    def __init__(self, max_retry: int = 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.user_attrs = {}
        self._retry(study, trial)


def _sqlalchemy_url(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 when only it exists."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def trial_checkpoint_path(study_name: str, number: int) -> Path:
    """``studies/checkpoints/<study>/trial-<n>.pt``: a trial's last epoch, kept only while it
    runs, so that the retry of a trial whose worker was killed continues from there."""
    return DEFAULT_STORAGE_DIR / "checkpoints" / study_name / f"trial-{number}.pt"


def make_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL.

    * None: SQLite under ``studies/`` (one process at a time).
    * ``journal:PATH`` or a path ending in ``.log``/``.journal``: Optuna's journal file storage
      (several processes on one machine; trials of dead workers are found by process id).
    * any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``): RDB storage with a heartbeat
      (:func:`heartbeat_settings`), so trials of killed workers are failed and retried once.

    Raises:
        SweepSpecError: an unparsable or unreachable URL (one line).
    """
    url = url or default_storage_url()
    journal = journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        try:
            Path(journal).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(journal))
        except OSError as err:
            blocker = next((p for p in Path(journal).parents if p.is_file()), None)
            reason = f"{str(blocker)!r} is a file, not a folder" if blocker else err.strerror
            raise SweepSpecError(f"cannot open journal storage {journal!r}: {reason}") from None
    interval, grace = heartbeat_settings()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _sqlalchemy_url(url),
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryStaleTrial(max_retry=1),
            )
    except Exception as err:  # sqlalchemy raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SweepSpecError(
            f"cannot open Optuna storage {url!r}: {first}; expected sqlite:///FILE, "
            "postgresql://HOST/DB or journal:FILE"
        ) from None


class PruningCallback(Callback):
    """Reports ``metric`` each epoch (``trial.report(value, epoch)``) and raises
    ``optuna.TrialPruned`` when the study's pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial = trial
        self.metric = metric

    def on_train_start(self, state: TrainState) -> None:
        # a trial resumed from a checkpoint reports the epochs it inherited (no pruning on them)
        for record in state.history:
            value = record.get(self.metric)
            if value is not None and math.isfinite(value):
                self.trial.report(value, record["epoch"])

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
    failed_workers: list[tuple[int, int]] = field(default_factory=list)  # (index, exit status)


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
        self.numbers: list[int] = []  # trials this process ran (other workers add theirs)

    def __call__(self, trial: optuna.Trial) -> float:
        # first, so a worker that dies from here on leaves a trial others can recognize
        self.numbers.append(trial.number)
        trial.set_user_attr(WORKER_ATTR, {**worker_identity(), "trial": trial.number})
        params = suggest(trial, self.spec)
        config = with_overrides(self.base, params)
        run = self.tracker.start_trial(self.study_name, self.parent_run_id, trial.number, config)
        trial.set_user_attr(RUN_ID_ATTR, run.run_id)
        splits = make_splits(config, self.data)
        run.log_dataset(self.data, len(splits.train_idx), len(splits.val_idx))
        resume, origin = self._resume_state(trial, config)
        checkpoint = trial_checkpoint_path(self.study_name, trial.number)
        # the run logs an epoch before the pruner may stop the trial at it
        callbacks: list[Callback] = [
            Checkpointing(checkpoint),
            run,
            PruningCallback(trial, self.metric),
        ]
        bar = None
        if self.progress is not None:
            from cifar_hpo.progress import RichProgress

            bar = RichProgress(progress=self.progress, label=f"trial {trial.number}")
            callbacks.append(bar)
        result = None
        try:
            result = train(config, self.data, callbacks, resume=resume)
        except optuna.TrialPruned as err:
            _log_partial(run)
            run.end("KILLED", "PRUNED", str(err))
            raise
        except KeyboardInterrupt:
            run.end("KILLED", "FAIL", "interrupted (Ctrl-C/SIGTERM)")
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            _log_partial(run)
            run.end("FAILED", "FAIL", reason)
            raise
        finally:
            if bar is not None:
                bar.close()
            if result is None:  # ended during training: recorded above
                _drop_checkpoints(checkpoint, origin)
        try:
            return self._complete(trial, run, result)
        finally:
            # removed only once the trial is recorded: a worker killed before this point (no
            # finally runs) leaves its checkpoint for the retry
            _drop_checkpoints(checkpoint, origin)

    def _resume_state(self, trial: optuna.Trial, config) -> tuple[dict | None, Path | None]:
        """For a retry of a trial whose worker was killed: that trial's last epoch checkpoint,
        when this machine has it and it was written with the same config."""
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        original = frozen.system_attrs.get("failed_trial")
        if original is None:
            return None, None
        path = trial_checkpoint_path(self.study_name, int(original))
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            return None, None  # another machine's trial, or nothing written yet: start over
        if state.get("config") != config.to_dict():
            return None, path
        trial.set_user_attr("resumed_from", {"trial": int(original), "epoch": int(state["epoch"])})
        return state, path

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


def _drop_checkpoints(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


def _log_partial(run: TrialRun) -> None:
    """Config, history and plots of a pruned or failed run; a logging error must not hide the
    trial's own outcome."""
    try:
        run.log_partial()
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"could not log the partial run {run.run_id}: {err}", stacklevel=2)


def reconcile_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Close MLflow runs left RUNNING by killed workers: a trial run whose Optuna trial is no
    longer RUNNING is terminated with the matching status (FAILED for a failed trial). Run this
    after :func:`~cifar_hpo.sweep.workers.fail_stale_trials`. Returns how many were fixed."""
    exp = tracker.client.get_experiment_by_name(experiment_name(study.study_name))
    if exp is None:
        return 0
    running = tracker.client.search_runs(
        [exp.experiment_id],
        filter_string="attributes.status = 'RUNNING' and tags.`cifar_hpo.role` = 'trial'",
        max_results=10000,
    )
    if not running:
        return 0
    status_of = {
        TrialState.COMPLETE: "FINISHED",
        TrialState.PRUNED: "KILLED",
        TrialState.FAIL: "FAILED",
    }
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    fixed = 0
    for run in running:
        try:
            t = trials.get(int(run.data.tags.get("cifar_hpo.trial", "")))
        except ValueError:
            continue
        if t is None or t.state not in status_of:
            continue  # still running somewhere, or not this study's trial
        if t.user_attrs.get(RUN_ID_ATTR, run.info.run_id) != run.info.run_id:
            continue  # the trial's own run is another one
        reason = t.user_attrs.get(FAIL_REASON_ATTR) or "worker stopped before closing this run"
        TrialRun(tracker, run.info.run_id).end(status_of[t.state], t.state.name, reason)
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
        direction=spec.objective.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != spec.objective.direction:
        raise SweepSpecError(
            f"study {study_name!r} exists with direction {study.direction.name.lower()}, "
            f"but the spec says {spec.objective.direction}"
        )
    check_search_space(study, spec, allow_space_change)
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


def prepare_sweep(
    study_name: str,
    *,
    storage: str | None = None,
    seed: int | None = None,
    sweeps_dir: str | Path = "sweeps",
    data_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    worker_index: int | None = None,
    allow_space_change: bool = False,
) -> PreparedSweep:
    """Validate the spec, load the data, open the study, recover from killed workers (fail their
    stale trials, then close their MLflow runs) and get the study's one parent run.

    Raises:
        SweepSpecError: invalid spec, storage or study name (before any trial starts).
        DatasetError: the dataset is missing.
    """
    from cifar_hpo.sweep.workers import fail_stale_trials

    spec = load_spec(study_name, sweeps_dir)
    base = spec.base_config()
    if overrides:
        base = with_overrides(base, overrides)
    data = load_dataset(base.data.dataset, base.data.data_dir or data_dir)
    store = make_storage(storage)
    study = open_study(study_name, spec, store, seed, worker_index, allow_space_change)
    tracker = Tracker(tracking_uri)
    fail_stale_trials(study, store)
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
    # one process at a time on SQLite: no other worker can race for the parent run
    settle = 0.0 if storage_kind(storage) == "sqlite" else PARENT_SETTLE_S
    parent = tracker.parent_run(study, summary, settle=settle)
    return PreparedSweep(spec, data, study, store, tracker, parent)


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
    worker_index: int | None = None,
    allow_space_change: bool = False,
) -> SweepOutcome:
    """Run ``n_trials`` more trials (or until ``timeout`` seconds) of ``sweeps/<study>.yaml``.

    Other workers may run the same study at the same time on a shared storage.

    Raises:
        SweepSpecError: invalid spec, storage or study name (before any trial starts).
        DatasetError: the dataset is missing.
    """
    from cifar_hpo.sweep.workers import fail_stale_trials

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
    )
    study, tracker, parent = prep.study, prep.tracker, prep.parent_run_id
    progress = _sweep_progress(console) if show_progress else None
    objective = Objective(prep.spec, prep.data, tracker, study_name, parent, progress, overrides)
    interrupted = False
    callbacks: list = []
    if progress is not None:
        task = progress.add_task("trials", total=n_trials, info="")
        callbacks.append(_TrialBar(progress, task))
        progress.start()
    elif console is not None:
        callbacks.append(_TrialLog(console))
    try:
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, catch=(Exception,), callbacks=callbacks
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()
    # trials of other workers failed by the heartbeat meanwhile: close their runs too
    fail_stale_trials(study, prep.storage)
    reconcile_runs(study, tracker)
    tracker.finish_parent(study, parent, status="KILLED" if interrupted else "FINISHED")
    return SweepOutcome(study, parent, interrupted, sorted(objective.numbers))


def _sweep_progress(console: Console | None) -> Progress:
    from cifar_hpo.progress import make_progress

    return make_progress(console)


class _TrialLog:
    """Optuna study callback printing one line per finished trial (when there is no bar)."""

    def __init__(self, console: Console):
        self.console = console

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name.lower()
        if trial.state == TrialState.COMPLETE:
            state += f" {trial.value:.4f}"
        elif trial.state == TrialState.FAIL:
            state += f": {trial.user_attrs.get(FAIL_REASON_ATTR, 'see the MLflow run')}"
        self.console.print(f"trial {trial.number} {state}", highlight=False, markup=False)


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
