"""Several workers on one study: worker identity, trials of killed workers, local launcher.

Coordination is Optuna's own: every worker opens the same study on a shared storage and asks it
for trials (PostgreSQL through RDB storage for several machines, a journal file for several
processes on one machine). What the storages leave to the caller is here:

* :func:`fail_stale_trials` fails the trials a killed worker left RUNNING and queues one retry
  of each (Optuna's ``RetryHeartbeatStaleTrialCallback``). RDB storage finds them by heartbeat
  (a trial's process records one every ``CIFAR_HPO_HEARTBEAT_INTERVAL`` seconds; after
  ``CIFAR_HPO_HEARTBEAT_GRACE`` seconds without one it is stale). Journal storage has no
  heartbeat, so each trial records its worker (host, process id and start time) and a worker
  on the same host that finds that process gone fails the trial.
* :func:`launch_workers` is ``cifar-hpo sweep --workers K``: K local worker processes, the
  trials split between them, their output prefixed, Ctrl-C/SIGTERM forwarded once.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

if TYPE_CHECKING:
    from cifar_hpo.sweep.runner import SweepOutcome


class WorkerError(ValueError):
    """Workers cannot run as asked (for example several on SQLite). The message is one line."""


# ----------------------------------------------------------------------------- identity
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


# ----------------------------------------------------------------------------- stale trials
def stale_journal_trials(study: optuna.Study, grace: float) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose worker process is gone; a trial that never recorded its worker
    counts once it has been running for ``grace`` seconds."""
    from cifar_hpo.sweep.runner import WORKER_ATTR

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
    import warnings

    from cifar_hpo.sweep.runner import (
        FAIL_REASON_ATTR,
        WORKER_ATTR,
        RetryStaleTrial,
        heartbeat_settings,
    )

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


# ----------------------------------------------------------------------------- launcher
def require_shared_storage(storage: str | None, workers: int, study: str) -> None:
    """Several workers need a storage several processes can write: not SQLite (Optuna's FAQ).

    Raises:
        WorkerError: one line naming what to use instead.
    """
    from cifar_hpo.sweep.runner import storage_kind

    if workers > 1 and storage_kind(storage) == "sqlite":
        shown = storage or "the default sqlite:///studies/optuna.db"
        raise WorkerError(
            f"--workers {workers} cannot share {shown} (SQLite is for one process); use "
            f"--storage journal:studies/{study}.log (one machine) or a PostgreSQL URL "
            "(postgresql://USER@HOST/DB)"
        )


def split_trials(trials: int | None, workers: int) -> list[int | None]:
    """``trials`` shared out as evenly as possible (5 over 3 -> [2, 2, 1]); None stays None."""
    if trials is None:
        return [None] * workers
    workers = min(workers, trials)
    return [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]


def launch_workers(
    worker_args: Callable[[int, int | None], list[str]],
    shares: list[int | None],
    console: Console,
) -> tuple[list[int], bool]:
    """Run ``python -m cifar_hpo.cli <worker_args(i, share)>`` for each share, concurrently.

    Each worker's output lines are printed with a ``[wI]`` prefix. Workers run in their own
    session (a terminal's Ctrl-C reaches only this launcher); the first SIGINT/SIGTERM here is
    forwarded to every worker as SIGTERM (each records its running trial and exits 130), a
    second one kills them (their trials are recovered by the next worker that starts).
    ``OMP_NUM_THREADS`` defaults to the CPU count divided among the workers.

    Returns:
        (exit status of each worker, whether the launcher was interrupted).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("COLUMNS", str(max(console.width - 5, 80)))  # lines are wrapped here, not there
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(shares))))
    procs: list[subprocess.Popen] = []
    lock = threading.Lock()

    def pump(i: int, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                console.print(
                    f"[w{i}] {line.rstrip()}", markup=False, highlight=False, soft_wrap=True
                )

    signals = {"count": 0}

    def forward(signum, frame) -> None:
        signals["count"] += 1
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signals["count"] == 1 else signal.SIGKILL)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, forward)
    pumps = []
    try:
        for i, share in enumerate(shares):
            proc = subprocess.Popen(
                [sys.executable, "-m", "cifar_hpo.cli", *worker_args(i, share)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                start_new_session=True,
            )
            procs.append(proc)
            pumps.append(threading.Thread(target=pump, args=(i, proc), daemon=True))
            pumps[-1].start()
        codes = [proc.wait() for proc in procs]
        for t in pumps:
            t.join(timeout=5)
    finally:
        for proc in procs:  # an exception here (not a signal) must not orphan workers
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return codes, signals["count"] > 0


def run_sweep_workers(
    study_name: str,
    trials: int | None,
    workers: int,
    *,
    timeout: float | None = None,
    storage: str | None = None,
    seed: int | None = None,
    sweeps_dir: str | Path = "sweeps",
    data_dir: str | Path | None = None,
    sets: list[str] | None = None,
    console: Console,
    allow_space_change: bool = False,
) -> SweepOutcome:
    """``cifar-hpo sweep --workers K``: check the spec, data and storage and create the study
    and its MLflow parent run here, once; then run K worker processes (``sweep --workers 1``)
    sharing out ``trials``; then fail and close whatever a dead worker left RUNNING.

    Raises:
        WorkerError: a storage several processes cannot share.
        SweepSpecError, DatasetError: as :func:`~cifar_hpo.sweep.runner.prepare_sweep`.
    """
    from cifar_hpo.config import parse_overrides
    from cifar_hpo.sweep.runner import SweepOutcome, prepare_sweep, reconcile_runs

    require_shared_storage(storage, workers, study_name)
    sets = list(sets or [])
    prep = prepare_sweep(
        study_name,
        storage=storage,
        seed=seed,
        sweeps_dir=sweeps_dir,
        data_dir=data_dir,
        overrides=parse_overrides(sets),
        allow_space_change=allow_space_change,  # the workers then find the new space recorded
    )
    before = {t.number for t in prep.study.get_trials(deepcopy=False)}
    shares = split_trials(trials, workers)
    console.print(
        f"study {study_name}: {len(shares)} workers"
        + (f", trials {' + '.join(str(n) for n in shares)}" if trials else ""),
        highlight=False,
    )

    def worker_args(i: int, share: int | None) -> list[str]:
        args = ["sweep", "--study", study_name, "--storage", str(storage), "--workers", "1"]
        args += ["--worker-index", str(i), "--sweeps-dir", str(sweeps_dir), "--no-progress"]
        args += ["--trials", str(share)] if share is not None else []
        args += ["--timeout", str(timeout)] if timeout is not None else []
        args += ["--seed", str(seed)] if seed is not None else []
        args += ["--data-dir", str(data_dir)] if data_dir is not None else []
        for item in sets:
            args += ["--set", item]
        return args

    codes, interrupted = launch_workers(worker_args, shares, console)
    interrupted = interrupted or 130 in codes
    fail_stale_trials(prep.study, prep.storage)
    reconcile_runs(prep.study, prep.tracker)
    if prep.tracker.client.get_run(prep.parent_run_id).info.status == "RUNNING":
        status = "KILLED" if interrupted else "FAILED" if any(codes) else "FINISHED"
        prep.tracker.finish_parent(prep.study, prep.parent_run_id, status=status)
    new = sorted(t.number for t in prep.study.get_trials(deepcopy=False) if t.number not in before)
    failed = [(i, code) for i, code in enumerate(codes) if code not in (0, 130)]
    return SweepOutcome(prep.study, prep.parent_run_id, interrupted, new, failed)
