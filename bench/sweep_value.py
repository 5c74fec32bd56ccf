"""Sweep value: does a budgeted study hand the user a better model than the recipe alone?

In one run on this machine, each arm on ``--seeds N`` random seeds where it trains itself:

1. the budgeted study (``cifar-hpo sweep --study S --budget B``: plan, search, the finalists'
   race with the reference recipe beside it, significance-gated champion); its champion arm's
   per-seed test accuracies come from the race;
2. the reference recipe of ``sweeps/recipes.yaml`` at the champion's epochs (equal training);
3. the reference recipe with its epochs scaled so that one run's training fills the study's
   whole wall time (:func:`compute_matched_epochs`): what the user gets by not sweeping.

Prints the three test accuracies (mean over seeds), minutes, and the champion's difference to
each with Welch's 95 % interval (>= 2 seeds per arm) and the exact McNemar p-value
(:mod:`cifar_hpo.stats`); ``--readme`` rewrites README's ``RESULTS:sweep-value`` block, stamped
with commit, date, machine and versions.

Targets (issue 20, 2-core CPU, ``--budget 60m``): champion vs the recipe at equal epochs
+0.3 points with the interval above 0, and >= the compute-matched recipe.

The study runs in a fresh folder (``--workdir``, default a new temporary one: its own
``studies/`` and MLflow store) so earlier trials never count::

    .venv/bin/python bench/sweep_value.py --study baseline --budget 60m --seeds 3
    .venv/bin/python bench/sweep_value.py --study quick --budget 3m --recipe guide-airbench
"""

from __future__ import annotations

import argparse
import math
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
from cifar_hpo.reports import pct, rewrite_readme
from cifar_hpo.reproduce.recipes import recipe_config
from cifar_hpo.stats import compare_arms, unpack_correct, welch
from cifar_hpo.sweep.budget import parse_duration
from cifar_hpo.sweep.finalists import RACE_ATTR
from cifar_hpo.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "sweep-value"
TARGET_MARGIN = 0.3  # points above the recipe at the champion's epochs


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


def compute_matched_epochs(wall_s: float, result) -> float:
    """Epochs (tenths) at which one run of ``result``'s config trains for ``wall_s`` seconds:
    its measured seconds per epoch (``epoch_seconds``, validation included) and its fixed
    cost outside epochs (model build, test pass) from the run ``result`` of the same config.

    Raises:
        ValueError: ``result`` has no epoch history.
    """
    per_epoch = [float(r["epoch_seconds"]) for r in result.history if r.get("epoch_seconds")]
    if not per_epoch:
        raise ValueError("a run without epochs cannot be scaled")
    epoch_s = sum(per_epoch) / len(per_epoch)
    fixed_s = max(0.0, result.seconds - sum(per_epoch))
    return max(0.1, math.floor((wall_s - fixed_s) / epoch_s * 10) / 10)


def race_reference(study) -> dict[str, Any] | None:
    """The race's reference arm as the recipe-at-equal-epochs arm (``--equal-from-race``):
    the study refit its reference recipe beside the finalists at the champion's epochs and
    seeds, so training it again would repeat those runs. Per-seed test accuracies, the first
    seed's per-image correctness, minutes per run and seconds per epoch (whole-run seconds
    over epochs: model build and test pass included, so a run scaled from it ends a little
    inside the wall time). None when the race had no reference arm or recorded no seconds.
    """
    race = study.user_attrs.get(RACE_ATTR) or {}
    arm = next((a for a in race.get("arms", []) if a["reference"]), None)
    if arm is None or not arm.get("seconds") or not arm["test_acc"]:
        return None
    per_epoch = [s / e for s, e in zip(arm["seconds"], arm["epochs"], strict=True) if e]
    return {
        "epochs": race["epochs"],
        "test_acc": arm["test_acc"],
        "correct": unpack_correct(arm["correct"]) if arm.get("correct") else None,
        "minutes": [s / 60 for s in arm["seconds"]],
        "seconds_per_epoch": sum(per_epoch) / len(per_epoch),
        "source": f"the race's reference arm (trial {arm['trial']})",
    }


def train_recipe(config, data, epochs: float, seeds: int) -> dict[str, Any]:
    """``seeds`` runs of the recipe at ``epochs`` (seeds ``config.seed``, +1, ...): per-seed
    test accuracies, the first run's per-image correctness and result, minutes of each."""
    runs = []
    for i in range(seeds):
        cfg = with_overrides(config, {"epochs": epochs, "seed": config.seed + i})
        runs.append(train(cfg, data))
    return {
        "epochs": epochs,
        "test_acc": [r.test.metrics["acc"] for r in runs],
        "correct": runs[0].test.correct,
        "minutes": [r.seconds / 60 for r in runs],
        "first": runs[0],
    }


def champion_arm(study) -> dict[str, Any]:
    """The race's promoted arm: per-seed test accuracies and first-seed correctness."""
    race = study.user_attrs.get(RACE_ATTR) or {}
    refit = study.user_attrs.get("refit") or {}
    arm = next((a for a in race.get("arms", []) if a["trial"] == race.get("promoted_trial")), None)
    if arm is None:
        acc = refit.get("test_acc")
        return {"trial": refit.get("trial"), "test_acc": [acc] if acc is not None else [],
                "correct": None, "epochs": refit.get("epochs"), "reference": False}  # fmt: skip
    correct = unpack_correct(arm["correct"]) if arm.get("correct") else None
    return {"trial": arm["trial"], "test_acc": arm["test_acc"], "correct": correct,
            "epochs": race["epochs"], "reference": arm["reference"]}  # fmt: skip


def require_champion(champion: dict[str, Any], study: str, budget: str, states: Counter) -> None:
    """Stop before the recipe arms when the study ended without a refit champion (a budget
    that held no refit, or an interrupted study): nothing would be compared.

    Raises:
        SystemExit: one line naming the study, its budget and its trial states.
    """
    if champion["test_acc"] and champion["epochs"]:
        return
    seen = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no trials"
    raise SystemExit(
        f"error: study {study} with --budget {budget} ended without a refit champion "
        f"({seen}): give a larger --budget"
    )


def versus(champion: dict, other: dict) -> str:
    if not champion["test_acc"] or not other["test_acc"]:
        return "-"
    return compare_arms(
        champion["test_acc"], other["test_acc"], champion["correct"], other["correct"]
    ).text()


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def render(report: dict[str, Any], stamp_text: str, command: str) -> str:
    """The README block."""
    s, equal, matched = report["study"], report["equal"], report["matched"]
    states = ", ".join(f"{n} {state}" for state, n in sorted(s.get("states", {}).items()))
    limit = 1.05 * parse_duration(report["budget"]) / 60
    champ = s["champion"]
    lines = [
        f"<!-- written by `{command}`; do not edit by hand -->",
        "",
        f"**Study `{s['name']}` with `--budget {report['budget']}`** ({s['minutes']:.1f} min; "
        f"trials: {states or '-'}): {s.get('race_summary') or 'no race'}.",
        "",
        "| arm | epochs | seeds | test accuracy (mean) | minutes | champion minus arm |",
        "|---|---:|---:|---:|---:|---|",
        f"| champion (trial {champ['trial']}"
        + (", the recipe" if champ.get("reference") else "")
        + f") | {champ['epochs']:g} | {len(champ['test_acc'])} | "
        f"{pct(_mean(champ['test_acc']))} | {s['minutes']:.1f} (whole study) | |",
    ]
    for label, arm in (("recipe at the champion's epochs", equal),
                       ("recipe filling the study's wall time", matched)):  # fmt: skip
        if arm.get("source"):
            label = f"{label}: {arm['source']}"
        lines.append(
            f"| {label} | {arm['epochs']:g} | {len(arm['test_acc'])} | "
            f"{pct(_mean(arm['test_acc']))} | {sum(arm['minutes']) / len(arm['minutes']):.1f} "
            f"each | {arm['versus']} |"
        )
    checks = [
        f"study within {limit:.0f} min: {'met' if s['minutes'] <= limit else 'NOT met'}",
        f"+{TARGET_MARGIN:g} points over the recipe at equal epochs with the interval above 0: "
        + ("met" if report["checks"]["equal"] else "NOT met"),
        "champion >= the recipe given the whole wall time: "
        + ("met" if report["checks"]["matched"] else "NOT met"),
    ]
    lines += ["", "Targets (issue 20): " + "; ".join(checks) + ".", "", stamp_text]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="baseline")
    parser.add_argument("--budget", default="60m")
    parser.add_argument("--recipe", default="airbench94", help="reference recipe by name")
    parser.add_argument("--seeds", type=int, default=1, help="seeds of each recipe arm")
    parser.add_argument(
        "--equal-from-race",
        action="store_true",
        help="take the recipe at the champion's epochs from the race's reference arm (the "
        "study enqueues --recipe as its reference) instead of training it again",
    )
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
    study = outcome.study
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    champion = champion_arm(study)
    require_champion(champion, args.study, args.budget, states)
    config = recipe_config(args.recipe, args.sweeps_dir / "recipes.yaml")
    overrides = {"data.data_dir": config.data.data_dir or args.data_dir}
    config = with_overrides(config, {**overrides, **parse_overrides(args.recipe_set)})
    data = load_dataset(config.data.dataset, config.data.data_dir)
    equal = race_reference(study) if args.equal_from_race else None
    if equal is not None:
        epochs = max(0.1, math.floor(study_minutes * 60 / equal["seconds_per_epoch"] * 10) / 10)
    else:
        equal = train_recipe(config, data, champion["epochs"], args.seeds)
        epochs = compute_matched_epochs(study_minutes * 60, equal["first"])
    matched = train_recipe(config, data, epochs, args.seeds)
    checks = {}
    for name, arm in (("equal", equal), ("matched", matched)):
        arm["versus"] = versus(champion, arm)
        diff = 100 * ((_mean(champion["test_acc"]) or 0) - (_mean(arm["test_acc"]) or 0))
        low = None
        if min(len(champion["test_acc"]), len(arm["test_acc"])) >= 2:
            low = welch(champion["test_acc"], arm["test_acc"]).low
        checks[name] = (
            diff >= TARGET_MARGIN and low is not None and low > 0 if name == "equal" else diff >= 0
        )
    race = study.user_attrs.get(RACE_ATTR) or {}
    report = {
        "budget": args.budget,
        "study": {
            "name": args.study,
            "champion": champion,
            "states": dict(states),
            "minutes": study_minutes,
            "race_summary": race.get("summary"),
        },  # fmt: skip
        "equal": {k: v for k, v in equal.items() if k not in ("first", "correct")},
        "matched": {k: v for k, v in matched.items() if k not in ("first", "correct")},
        "checks": checks,
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
