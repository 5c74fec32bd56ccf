"""Where studies live and who runs their trials: storage URLs, heartbeats, worker identity,
trials of killed workers, and the trial user attributes every layer of the sweep reads.

Coordination is Optuna's own: every worker opens the same study on a shared storage and asks it
for trials (PostgreSQL through RDB storage for several machines, a journal file for several
processes on one machine). What the storages leave to the caller is here:

* :func:`fail_stale_trials` fails the trials a killed worker left RUNNING and queues one retry
  of each (Optuna's ``RetryHeartbeatStaleTrialCallback``). RDB storage finds them by heartbeat
  (a trial's process records one every ``CIFAR_HPO_HEARTBEAT_INTERVAL`` seconds; after
  ``CIFAR_HPO_HEARTBEAT_GRACE`` seconds without one it is stale). Journal storage has no
  heartbeat, so each trial records its worker (host, process id and start time) and a worker
  on the same host that finds that process gone fails the trial.
"""

from __future__ import annotations

import copy
import datetime
import importlib.util
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cifar_hpo.errors import SweepSpecError
from cifar_hpo.record import FAIL_REASON_ATTR, MODEL_ID_ATTR, RUN_ID_ATTR, SPACE_ATTR, WORKER_ATTR  # noqa: F401 (re-exported)

DEFAULT_STORAGE_DIR = Path("studies")

HEARTBEAT_ENV = ("CIFAR_HPO_HEARTBEAT_INTERVAL", 30)  # seconds between a trial's heartbeats
GRACE_ENV = ("CIFAR_HPO_HEARTBEAT_GRACE", 90)  # seconds without one before a trial is stale


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


def load_stored_study(study_name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The stored study ``study_name`` (never creates one).

    Raises:
        SweepSpecError: no such study; the message lists the stored ones.
    """
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
        raise SweepSpecError(
            f"unknown study {study_name!r}; stored studies: {', '.join(names) or 'none'}"
        ) from None


# ----------------------------------------------------------------------------- workers
def _start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if len(fields) > 19 else None


def worker_identity() -> dict[str, Any]:
    """This process as a trial's worker: ``{"host", "pid", "started"}``."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def process_gone(owner: dict[str, Any]) -> bool:
    """Whether the worker process ``owner`` (see :func:`worker_identity`) has certainly ended.

    Only processes on this host can be checked; a reused process id is told apart by its start
    time, and a zombie (killed, not yet reaped) counts as ended.
    """
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    pid = owner["pid"]
    if pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    if fields[0] == b"Z":
        return True
    started = owner.get("started")
    return started is not None and int(fields[19]) != started


def stale_journal_trials(study: optuna.Study, grace: float) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose worker process is gone; a trial that never recorded its worker
    counts once it has been running for ``grace`` seconds."""
    now = datetime.datetime.now()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER_ATTR)
        if isinstance(owner, dict) and owner.get("trial") == t.number:
            if process_gone(owner):
                stale.append(t)
        elif t.datetime_start is not None:  # (an owner copied from a retried trial is not one)
            if (now - t.datetime_start).total_seconds() > grace:
                stale.append(t)
    return stale


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Fail the trials that killed workers left RUNNING and queue one retry of each.

    RDB storage: Optuna's heartbeat check (``optuna.storages.fail_stale_trials``; the storage's
    stale-trial callback queues the retry). Journal storage: :func:`stale_journal_trials`.
    Returns the numbers of the trials this call failed (RDB: the ones no longer RUNNING).
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return sorted(before - now)
    if not isinstance(storage, optuna.storages.JournalStorage):
        return []
    _, grace = heartbeat_settings()
    failed = []
    retry = RetryStaleTrial(max_retry=1)
    for t in stale_journal_trials(study, grace):
        owner = t.user_attrs.get(WORKER_ATTR) or {}
        reason = f"worker {owner.get('host', '?')}:{owner.get('pid', '?')} stopped mid-trial"
        try:
            storage.set_trial_user_attr(t._trial_id, FAIL_REASON_ATTR, reason)
            study.tell(t.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another worker failed it first
            continue
        failed.append(t.number)
        retry(study, storage.get_trial(t._trial_id))
    return failed
