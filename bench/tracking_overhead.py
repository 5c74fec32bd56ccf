"""Tracking overhead: the share of a sweep's time spent on MLflow and the Optuna storage.

The same study runs twice in one process, with the same sampler seed and no pruning, so both
runs train the same trials:

1. **no-op**: :class:`cifar_hpo.tracking.NullTracker` and Optuna's in-memory storage;
2. **tracked**: MLflow (a fresh SQLite store and artifact folder, system metrics on) and a
   fresh SQLite Optuna storage with heartbeats, i.e. what ``cifar-hpo sweep`` uses by default.

What is measured in the tracked run: the seconds the sweep's own thread spends inside tracking
code (every method of :class:`~cifar_hpo.tracking.Tracker` and
:class:`~cifar_hpo.tracking.TrialRun`, model logging included, the champion keeper, the
parent-run summary and plots, run reconciliation) and inside the Optuna storage (every
storage method), each counted once at its outermost call, with both stores already created
(the one-time creation of empty stores is reported apart), against the trials' own time
(Optuna's trial start to completion). Background threads (heartbeats, system metrics) are not
counted: they run beside training. As a cross-check the wall time of both runs is compared
too, which on a shared 2-core machine is noisier than the direct measure.

Target (issue 11): tracking (MLflow + Optuna storage) <= 2 % of trial time, with model logging
included for the trials that log one.

Run (the ``baseline`` study's own budget: about 1 minute a trial on a 2-core CPU, so ~12
minutes for both runs)::

    .venv/bin/python bench/tracking_overhead.py --readme docs/results.md
    .venv/bin/python bench/tracking_overhead.py --trials 2 --set epochs=1   # a quick look
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import yaml

import cifar_hpo.sweep.runner as sweep_runner
import cifar_hpo.sweep.study as sweep_study
from cifar_hpo.config import parse_overrides, with_overrides
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.provenance import stamp
from cifar_hpo.reports import pct, rewrite_readme
from cifar_hpo.sweep.champion import ChampionKeeper
from cifar_hpo.sweep.runner import run_sweep
from cifar_hpo.sweep.spec import load_spec
from cifar_hpo.sweep.storage import make_storage
from cifar_hpo.tracking import NullTracker, Tracker, TrialRun

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "tracking-overhead"
TARGET = 0.02


class CallTimer:
    """Seconds spent inside wrapped callables by one thread, each call counted once at its
    outermost level (a tracking method calling another is not counted twice)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth = 0
        self._thread = threading.main_thread()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        func = original.__func__ if isinstance(original, staticmethod) else original

        @functools.wraps(func)
        def timed(*args, **kwargs):
            if threading.current_thread() is not self._thread or self._depth:
                return func(*args, **kwargs)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def wrap_public(self, cls: type, label: str) -> None:
        """Every public method of ``cls`` (and the callback hooks), under ``label``."""
        for name, value in list(vars(cls).items()):
            if callable(value) and (not name.startswith("_") or name == "__call__"):
                self.wrap(cls, name, f"{label}: {cls.__name__}.{name}")

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def run_once(
    study: str,
    trials: int,
    overrides: dict[str, Any],
    sweeps_dir: Path,
    data_dir: str | None,
    folder: Path,
    tracked: bool,
) -> dict[str, Any]:
    """One run of the study in ``folder`` (its checkpoints, stores and artifacts); returns wall
    seconds, trial seconds and, tracked, the seconds spent in tracking."""
    timer = CallTimer()
    setup = 0.0
    if tracked:
        # the stores exist before timing, as after a project's first sweep; their one-time
        # creation (MLflow's database migrations take seconds) is reported apart
        t0 = time.perf_counter()
        storage: Any = make_storage(f"sqlite:///{folder / 'optuna.db'}")
        tracker: Any = Tracker(f"sqlite:///{folder / 'mlflow.db'}")
        tracker.client.search_experiments()
        setup = time.perf_counter() - t0
        timer.wrap_public(Tracker, "mlflow")
        timer.wrap_public(TrialRun, "mlflow")
        timer.wrap_public(ChampionKeeper, "mlflow")
        # wrapped where each is looked up: the runner calls these three, study opening the first
        for module, name in (
            (sweep_runner, "finish_sweep"),
            (sweep_runner, "reconcile_runs"),
            (sweep_runner, "finish_parent"),
            (sweep_study, "reconcile_runs"),
        ):
            timer.wrap(module, name, f"mlflow: {name}")
        timer.wrap_public(type(storage), "optuna storage")
    else:
        storage = optuna.storages.InMemoryStorage()
        tracker = NullTracker()
    cwd = os.getcwd()
    os.chdir(folder)  # trial checkpoints (studies/checkpoints/...) stay in the temporary folder
    t0 = time.perf_counter()
    try:
        outcome = run_sweep(
            study,
            trials,
            storage=storage,
            sweeps_dir=sweeps_dir,
            data_dir=data_dir,
            overrides=overrides,
            show_progress=False,
            tracker=tracker,
        )
    finally:
        timer.restore()
        os.chdir(cwd)
    wall = time.perf_counter() - t0
    done = [t for t in outcome.study.get_trials(deepcopy=False) if t.datetime_complete]
    trial_seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return {
        "tracked": tracked,
        "wall_seconds": wall,
        "trial_seconds": trial_seconds,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
                "model_logged": bool(t.user_attrs.get("mlflow_model_id")),
            }
            for t in done
        ],
        "store_creation_seconds": setup,
        "tracking_seconds": dict(timer.seconds),
        "tracking_calls": dict(timer.calls),
    }


def summarize(noop: dict[str, Any], tracked: dict[str, Any]) -> dict[str, Any]:
    """Tracking seconds as a share of trial time, and the wall-time cross-check."""
    spent = sum(tracked["tracking_seconds"].values())
    by_kind: dict[str, float] = {}
    for label, seconds in tracked["tracking_seconds"].items():
        kind = label.split(":")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    share = spent / tracked["trial_seconds"] if tracked["trial_seconds"] else float("nan")
    return {
        "tracking_seconds": spent,
        "tracking_share": share,
        "by_kind": by_kind,
        "by_call": dict(sorted(tracked["tracking_seconds"].items(), key=lambda kv: -kv[1])),
        "models_logged": sum(t["model_logged"] for t in tracked["trials"]),
        "trials": len(tracked["trials"]),
        "trial_seconds": tracked["trial_seconds"],
        "store_creation_seconds": tracked["store_creation_seconds"],
        "wall_noop": noop["wall_seconds"],
        "wall_tracked": tracked["wall_seconds"],
        "wall_ratio": tracked["wall_seconds"] / noop["wall_seconds"],
        "same_values": [t["value"] for t in noop["trials"]]
        == [t["value"] for t in tracked["trials"]],
        "met": share <= TARGET,
    }


def render(summary: dict[str, Any], stamp_text: str, command: str) -> str:
    """The README block."""
    kinds = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary["by_kind"].items()))
    verdict = "met" if summary["met"] else "NOT met"
    return "\n".join(
        [
            f"<!-- written by `{command}`; do not edit by hand -->",
            "",
            f"**Tracking overhead**: {summary['trials']} trials "
            f"({summary['trial_seconds'] / 60:.1f} min of training), "
            f"{summary['models_logged']} models logged: tracking took "
            f"**{summary['tracking_seconds']:.1f} s = {pct(summary['tracking_share'])}** "
            f"of trial time ({kinds}); target <= {100 * TARGET:.0f} %: {verdict}. "
            f"Creating empty stores (a project's first sweep only): "
            f"{summary['store_creation_seconds']:.1f} s. "
            f"Wall time tracked / no-op: {summary['wall_ratio']:.3f} "
            f"({summary['wall_tracked'] / 60:.1f} vs {summary['wall_noop'] / 60:.1f} min; "
            f"noisier on a shared CPU).",
            "",
            stamp_text,
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="baseline")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--sweeps-dir", default=str(ROOT / "sweeps"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--readme", default=None, help="rewrite its tracking-overhead block")
    args = parser.parse_args(argv)
    spec = load_spec(args.study, args.sweeps_dir)
    overrides = parse_overrides(args.overrides)
    data_dir = str(Path(args.data_dir or "data").resolve())
    # the same trials in both runs: the spec's seeded sampler and enqueued trials, no pruner
    # (a pruned trial would log no model)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp, "sweeps")
        spec_dir.mkdir()
        raw = yaml.safe_load((Path(args.sweeps_dir) / f"{args.study}.yaml").read_text())
        (spec_dir / f"{args.study}.yaml").write_text(
            yaml.safe_dump({**raw, "pruner": {"name": "none"}})
        )
        for tracked in (False, True):
            folder = Path(tmp, "tracked" if tracked else "noop")
            folder.mkdir()
            results[tracked] = run_once(
                args.study, args.trials, overrides, spec_dir, data_dir, folder, tracked
            )
    summary = summarize(results[False], results[True])
    base = with_overrides(spec.base_config(), overrides)
    device = resolve_device(base.device)
    command = "python bench/tracking_overhead.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    stamp_text = stamp(command.strip(), device, amp_enabled(device, base.amp), ROOT)
    print(render(summary, stamp_text, command.strip()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    if args.readme:
        rewrite_readme(args.readme, render(summary, stamp_text, command.strip()), BLOCK)
    return summary


if __name__ == "__main__":
    main()
