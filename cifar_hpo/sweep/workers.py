"""``cifar-hpo sweep --workers K``: K local worker processes on one study.

Each worker is ``python -m cifar_hpo.sweep.workers '<JSON arguments>'``: a process that calls
:func:`~cifar_hpo.sweep.runner.run_sweep` directly with the launcher's arguments (overrides
already parsed), not a second trip through the command line. Coordination between workers is
Optuna's own, through the shared storage (see :mod:`cifar_hpo.sweep.storage`); the launcher
checks the spec, data and storage once, creates the study and its MLflow parent run, shares out
the trials, prefixes each worker's output lines, forwards Ctrl-C/SIGTERM once, and at the end
fails and closes whatever a dead worker left RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from cifar_hpo.errors import CifarHpoError, WorkerError
from cifar_hpo.sweep.budget import budget_clock
from cifar_hpo.sweep.budgeted import plan_study, run_refit
from cifar_hpo.sweep.probe import measure_speeds
from cifar_hpo.sweep.progress import printer
from cifar_hpo.sweep.runner import SweepOutcome, finish_sweep
from cifar_hpo.sweep.storage import storage_kind
from cifar_hpo.sweep.study import prepare_sweep, require_stop_rule


# ----------------------------------------------------------------------------- launcher
def require_shared_storage(storage: str | None, workers: int, study: str) -> None:
    """Several workers need a storage several processes can write: not SQLite (Optuna's FAQ).

    Raises:
        WorkerError: one line naming what to use instead.
    """
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
    worker_kwargs: Callable[[int, int | None], dict[str, Any]],
    shares: list[int | None],
    console: Console,
) -> tuple[list[int], bool]:
    """Run one worker process per share, concurrently: ``python -m cifar_hpo.sweep.workers``
    with ``worker_kwargs(i, share)`` (the keyword arguments of ``run_sweep``) as JSON.

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
                [sys.executable, "-m", __name__, json.dumps(worker_kwargs(i, share))],
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
    overrides: dict[str, Any] | None = None,
    console: Console,
    allow_space_change: bool = False,
    budget_s: float | None = None,
) -> SweepOutcome:
    """``cifar-hpo sweep --workers K``: check the spec, data and storage and create the study
    and its MLflow parent run here, once; then run K worker processes sharing out ``trials``;
    then fail and close whatever a dead worker left RUNNING and settle the champion. With a
    budget, the speeds are measured here once (the workers read them from the cache), each
    worker searches for the planned time, and the refit runs here after them.

    Raises:
        WorkerError: a storage several processes cannot share.
        SweepSpecError, TrackingError, DatasetError: as
            :func:`~cifar_hpo.sweep.study.prepare_sweep`.
    """
    require_shared_storage(storage, workers, study_name)
    require_stop_rule(study_name, sweeps_dir, trials, timeout, budget_s, storage)
    prep = prepare_sweep(
        study_name,
        storage=storage,
        seed=seed,
        sweeps_dir=sweeps_dir,
        data_dir=data_dir,
        overrides=overrides,
        allow_space_change=allow_space_change,  # the workers then find the new space recorded
    )
    before = {t.number for t in prep.study.get_trials(deepcopy=False)}
    shares = split_trials(trials, workers)
    console.print(
        f"study {study_name}: {len(shares)} workers"
        + (f", trials {' + '.join(str(n) for n in shares)}" if trials else ""),
        highlight=False,
    )

    def worker_kwargs(i: int, share: int | None) -> dict[str, Any]:
        return {
            "study_name": study_name,
            "n_trials": share,
            "timeout": timeout,
            "storage": storage,
            "seed": seed,
            "sweeps_dir": str(sweeps_dir),
            "data_dir": str(data_dir) if data_dir is not None else None,
            "tracking_uri": prep.tracker.tracking_uri,
            "overrides": overrides or {},
            "worker_index": i,
            "budget_s": budget_s,
            "refit": False,
        }

    say = printer(console)
    clock = budget_clock(prep.study, budget_s if budget_s else None)
    plan = None
    if clock is not None and not clock.used_up:
        plan = plan_study(prep, measure_speeds(prep, overrides, say), clock.left_s, overrides)
    codes, interrupted = launch_workers(worker_kwargs, shares, console)
    interrupted = interrupted or 130 in codes
    if plan is not None and not interrupted:
        prep.study = optuna.load_study(study_name=study_name, storage=prep.storage)
        clock = budget_clock(prep.study, None) or clock
        run_refit(prep, plan, clock, overrides, say)
        clock.record(prep.study)
    finish_sweep(prep, "KILLED" if interrupted else "FAILED" if any(codes) else "FINISHED")
    new = sorted(t.number for t in prep.study.get_trials(deepcopy=False) if t.number not in before)
    failed = [(i, code) for i, code in enumerate(codes) if code not in (0, 130)]
    return SweepOutcome(prep.study, prep.parent_run_id, interrupted, new, failed)


def worker_main(argv: list[str]) -> int:
    """One worker process: ``run_sweep(**json.loads(argv[0]))`` with a line per trial.

    Returns:
        0 done, 130 interrupted (SIGTERM/Ctrl-C; the running trial is recorded), 2 a user
        error (its one line printed).
    """
    from cifar_hpo.device import tune_malloc
    from cifar_hpo.sweep.runner import run_sweep

    def _sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _sigterm)
    tune_malloc()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    console = Console(highlight=False)
    kwargs = json.loads(argv[0])
    try:
        outcome = run_sweep(**kwargs, console=console, show_progress=False)
    except CifarHpoError as err:
        console.print(f"error: {err}", markup=False)
        return 2
    console.print(f"worker done: {len(outcome.new_trials)} trials", markup=False)
    return 130 if outcome.interrupted else 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
