"""Sweep value: does a budgeted study hand the user a better model than the recipe alone?

In one run on this machine: (1) the budgeted study (``cifar-hpo sweep --study S --budget B``:
plan, search, refit of the best configuration as the champion), then (2) the reference recipe
of ``sweeps/recipes.yaml`` trained alone as published (its own epochs and seed). Prints both
test accuracies, both wall times in minutes and the difference, and with ``--readme`` rewrites
README's ``RESULTS:sweep-value`` block, stamped with commit, date, machine and versions.

Targets (issue 12, 2-core CPU, ``--budget 60m``): the study ends within 63 minutes; its
champion reaches >= 93 % test and beats the recipe as published by >= 0.3 points.

The study runs in a fresh folder (``--workdir``, default a new temporary one: its own
``studies/`` and MLflow store) so earlier trials never count::

    .venv/bin/python bench/sweep_value.py --study baseline --budget 60m --recipe airbench94
    .venv/bin/python bench/sweep_value.py --study quick --budget 3m --recipe guide-airbench
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from cifar_hpo.config import parse_overrides, with_overrides
from cifar_hpo.data import load_dataset
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.engine import train
from cifar_hpo.provenance import stamp
from cifar_hpo.reproduce.recipes import recipe_config
from cifar_hpo.reproduce.table import rewrite_readme
from cifar_hpo.sweep.budget import parse_duration
from cifar_hpo.sweep.refit import reference_trial
from cifar_hpo.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "sweep-value"
TARGET_ACC = 0.93  # issue 12, on the lossless original (upstream gets 90.43 % on our JPEG copy)
TARGET_MARGIN = 0.3  # points above the recipe as published


def run_study(study: str, budget_s: float, sweeps_dir: Path, data_dir: str, workdir: Path):
    """The budgeted study in ``workdir``; returns (outcome, minutes)."""
    cwd = os.getcwd()
    os.chdir(workdir)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    t0 = time.perf_counter()
    try:
        outcome = run_sweep(
            study,
            None,
            budget_s=budget_s,
            sweeps_dir=sweeps_dir,
            data_dir=data_dir,
            console=Console(),
            show_progress=False,
        )
    finally:
        os.chdir(cwd)
    return outcome, (time.perf_counter() - t0) / 60


def render(report: dict[str, Any], stamp_text: str, command: str) -> str:
    """The README block."""
    s, r = report["study"], report["recipe"]
    diff = None
    if s["test_acc"] is not None and r["test_acc"] is not None:
        diff = 100 * (s["test_acc"] - r["test_acc"])
    states = ", ".join(f"{n} {state}" for state, n in sorted(s.get("states", {}).items()))
    limit = 1.05 * parse_duration(report["budget"]) / 60
    checks = [
        f"study within {limit:.0f} min: {'met' if s['minutes'] <= limit else 'NOT met'}",
        f"champion >= {100 * TARGET_ACC:.0f} % test: "
        + ("met" if (s["test_acc"] or 0) >= TARGET_ACC else "NOT met"),
        f"beats the recipe by >= {TARGET_MARGIN:g} points: "
        + ("met" if diff is not None and diff >= TARGET_MARGIN else "NOT met"),
    ]
    return "\n".join(
        [
            f"<!-- written by `{command}`; do not edit by hand -->",
            "",
            f"**Study `{s['name']}` with `--budget {report['budget']}`**: champion (trial "
            f"{s['trial']}, refit {s['refit_epochs']} epochs) **{_pct(s['test_acc'])} test** in "
            f"{s['minutes']:.1f} min; recipe `{r['name']}` alone as published: "
            f"**{_pct(r['test_acc'])}** in {r['minutes']:.1f} min; difference "
            + (f"**{diff:+.2f} points**." if diff is not None else "-."),
            "",
            f"Trials: {states or '-'}. At search fidelity the champion scored "
            f"{_pct(s.get('search_value'))} validation, the enqueued recipe (trial 0) "
            f"{_pct(s.get('reference_search_value'))}; the refit's validation: "
            + (
                _pct(s["val_acc"])
                if s.get("val_acc") is not None
                else "none (it trained on the hold-out too, all of the training split)"
            )
            + ". Targets (issue 12): "
            + "; ".join(checks)
            + ".",
            "",
            stamp_text,
        ]
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="baseline")
    parser.add_argument("--budget", default="60m")
    parser.add_argument("--recipe", default="airbench94", help="reference recipe by name")
    parser.add_argument("--sweeps-dir", type=Path, default=ROOT / "sweeps")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--recipe-set", action="append", default=[], help="override the recipe (smoke runs)"
    )
    parser.add_argument("--readme", default=None, help="rewrite its sweep-value block")
    args = parser.parse_args(argv)
    budget_s = parse_duration(args.budget)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweep-value-"))
    workdir.mkdir(parents=True, exist_ok=True)
    outcome, study_minutes = run_study(
        args.study, budget_s, args.sweeps_dir.resolve(), str(Path(args.data_dir).resolve()), workdir
    )
    refit = outcome.study.user_attrs.get("refit") or {}
    trials = outcome.study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    reference = reference_trial(outcome.study)
    config = recipe_config(args.recipe, args.sweeps_dir / "recipes.yaml")
    overrides = {"data.data_dir": config.data.data_dir or args.data_dir}
    config = with_overrides(config, {**overrides, **parse_overrides(args.recipe_set)})
    data = load_dataset(config.data.dataset, config.data.data_dir)
    result = train(config, data)
    report = {
        "budget": args.budget,
        "study": {
            "name": args.study,
            "trial": refit.get("trial"),
            "refit_epochs": refit.get("epochs"),
            "test_acc": refit.get("test_acc"),
            "val_acc": refit.get("val_acc"),
            "search_value": refit.get("search_value"),
            "reference_search_value": reference.value if reference else None,
            "states": dict(states),
            "minutes": study_minutes,
        },
        "recipe": {
            "name": args.recipe,
            "test_acc": result.test.metrics["acc"] if result.test else None,
            "minutes": result.seconds / 60,
        },
    }
    device = resolve_device(config.device)
    command = "python bench/sweep_value.py " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp_text = stamp(command.strip(), device, amp_enabled(device, config.amp), ROOT)
    text = render(report, stamp_text, command.strip())
    print(text)
    if args.readme:
        rewrite_readme(args.readme, text, BLOCK)
    return report


if __name__ == "__main__":
    main()
