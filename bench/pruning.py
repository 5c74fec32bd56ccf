"""Sweep efficiency: one study with its configured pruner and the same study without pruning.

What is compared: ``sweeps/<study>.yaml`` run twice as an in-memory Optuna study with the same
sampler and seed, the same enqueued configs and the same number of trials; once with the spec's
pruner (``successive_halving`` for ``baseline``) and once with none. Both studies run at
``budget.fidelity: mid-schedule``, where the pruner compares trials inside their schedules (a study
at ``fidelity: complete``, as ``baseline`` is, never prunes mid-schedule: its search cost is
measured by ``bench/fidelity.py``). Every trial trains with the
shared core (:func:`cifar_hpo.engine.train`, seeded, so the same config gives the same curve in
both studies) and reports its validation metric each epoch through
:class:`cifar_hpo.sweep.objective.PruningCallback`. No MLflow tracking and no test-set evaluation:
only the search itself is measured.

Compute is counted in training images processed (``Result.images_seen``; for a pruned trial the
images up to the epoch it was pruned at), with training GMACs (images x 3 x forward MACs per
image) and wall seconds beside it. Reported per study: trials by state, total compute, the best
validation value and the compute spent until it was first reached; and for the pruned study, the
compute it needed to first come within ``--tolerance`` (0.5 points) of the unpruned study's best.

Target: the pruned study reaches the unpruned best within 0.5 points using at most
35 % of the unpruned study's compute (images).

Budget: by default the ``baseline`` spec at its search epochs (2) but on 10 % of the training
split (``--train-fraction 0.1``: 4,500 images per epoch, the full 5,000-image validation hold-out),
24 trials per study. Successive halving's first rung is epoch 1, so at 2 epochs a pruned trial
saves at most half its compute; ``--epochs 4`` gives it rungs at 1 and 3. ``--epochs``,
``--train-fraction`` and ``--trials`` scale it.

Run::

    .venv/bin/python bench/pruning.py --no-enqueue --epochs 4  # 60 min on a 2-core AVX512-BF16 EPYC
    .venv/bin/python bench/pruning.py --trials 40 --train-fraction 0.2 --json bench/results/p.json
    .venv/bin/python bench/pruning.py --study quick --trials 6          # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from cifar_hpo.config import parse_overrides, with_overrides
from cifar_hpo.data import load_dataset
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.provenance import stamp
from cifar_hpo.reports import number, rewrite_readme
from cifar_hpo.sweep.fidelity import MID_SCHEDULE
from cifar_hpo.sweep.objective import Objective
from cifar_hpo.sweep.spec import SweepSpec, build_pruner, build_sampler, load_spec
from cifar_hpo.tracking import NullTracker

ROOT = Path(__file__).resolve().parents[1]
TARGET_SHARE = 0.35
TOLERANCE = 0.005  # 0.5 points of accuracy

optuna.logging.set_verbosity(optuna.logging.ERROR)


def run_study(
    spec: SweepSpec,
    overrides: dict[str, Any],
    data,
    n_trials: int,
    pruned: bool,
    seed: int | None,
    enqueue: bool,
) -> optuna.Study:
    """One in-memory study: the spec's sampler (seeded) and its pruner, or no pruner; each
    trial is the sweep's own objective (:class:`cifar_hpo.sweep.objective.Objective`) with no
    tracking, no checkpoints and no test evaluation, which records each trial's compute."""
    sampler_spec = spec.sampler if seed is None else spec.sampler.model_copy(update={"seed": seed})
    spec = spec.model_copy(update={"sampler": sampler_spec})
    pruner = build_pruner(spec) if pruned else optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = build_sampler(spec)  # multivariate TPE is "experimental"
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction=spec.primary.direction)
    if enqueue:
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    objective = Objective(
        spec,
        data,
        "pruning-bench",
        tracker=NullTracker(),
        overrides=overrides,
        checkpoints=False,
        evaluate_test=False,
    )
    study.optimize(objective, n_trials=n_trials, catch=(Exception,))
    return study


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Per trial, in order: state, value, compute, and cumulative compute."""
    rows, images, gmacs, seconds = [], 0, 0.0, 0.0
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        n = int(t.user_attrs.get("images_seen", 0))
        g = n * 3 * t.user_attrs.get("macs", 0) / 1e9
        images, gmacs = images + n, gmacs + g
        seconds += float(t.user_attrs.get("seconds", 0.0))
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "epochs_run": t.user_attrs.get("epochs_run"),
                "images": n,
                "gmacs": g,
                "cum_images": images,
                "cum_gmacs": gmacs,
                "cum_seconds": seconds,
                "params": t.params,
                "fail_reason": t.user_attrs.get("fail_reason"),
            }
        )
    return rows


def first_reaching(rows: list[dict[str, Any]], threshold: float, maximize: bool):
    """The first completed trial whose value reaches ``threshold``, or None."""
    for r in rows:
        v = r["value"]
        if v is not None and (v >= threshold if maximize else v <= threshold):
            return r
    return None


def summarize(rows: list[dict[str, Any]], maximize: bool) -> dict[str, Any]:
    """Counts, totals, best value and the compute until the best was first reached."""
    done = [r for r in rows if r["value"] is not None]
    best = (max if maximize else min)(done, key=lambda r: r["value"]) if done else None
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    last = rows[-1] if rows else {"cum_images": 0, "cum_gmacs": 0.0, "cum_seconds": 0.0}
    return {
        "counts": counts,
        "images": last["cum_images"],
        "gmacs": last["cum_gmacs"],
        "seconds": last["cum_seconds"],
        "best_value": best["value"] if best else None,
        "best_trial": best["number"] if best else None,
        "images_to_best": best["cum_images"] if best else None,
        "trials": rows,
    }


def compare(unpruned: dict, pruned: dict, tolerance: float, maximize: bool) -> dict[str, Any]:
    """How much of the unpruned compute the pruned study needed to come within ``tolerance``."""
    out: dict[str, Any] = {"tolerance": tolerance, "target_share": TARGET_SHARE}
    ref = unpruned["best_value"]
    if ref is None or not unpruned["images"]:
        return {**out, "reached": False, "meets_target": False}
    threshold = ref - tolerance if maximize else ref + tolerance
    hit = first_reaching(pruned["trials"], threshold, maximize)
    out.update(
        threshold=threshold,
        reached=hit is not None,
        reached_at_trial=hit["number"] if hit else None,
        images_to_reach=hit["cum_images"] if hit else None,
        share_to_reach=hit["cum_images"] / unpruned["images"] if hit else None,
        gmacs_share_to_reach=(hit["cum_gmacs"] / unpruned["gmacs"])
        if hit and unpruned["gmacs"]
        else None,
        total_share=pruned["images"] / unpruned["images"],
        best_gap=(pruned["best_value"] - ref) if pruned["best_value"] is not None else None,
    )
    out["meets_target"] = bool(hit) and out["share_to_reach"] <= TARGET_SHARE
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--study", default="baseline", help="sweeps/<study>.yaml (or a YAML path)")
    p.add_argument("--sweeps-dir", default=str(ROOT / "sweeps"))
    p.add_argument("--trials", type=int, default=24, help="trials per study")
    p.add_argument("--epochs", type=int, default=None, help="per-trial epochs [spec's budget]")
    p.add_argument(
        "--train-fraction", type=float, default=0.1, help="share of the training split per trial"
    )
    p.add_argument("--seed", type=int, default=None, help="sampler seed [spec's]")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="'within' margin")
    p.add_argument("--no-enqueue", action="store_true", help="skip the spec's enqueued configs")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    p.add_argument("--data-dir", default=None, help="dataset folder [$CIFAR_HPO_DATA_DIR, data/]")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "pruning.json"))
    p.add_argument("--order", choices=("unpruned-first", "pruned-first"), default="unpruned-first")
    p.add_argument("--readme", default=None, help="rewrite this README's RESULTS:pruning block")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    console = Console()
    spec = load_spec(args.study, args.sweeps_dir)
    study_fidelity = spec.budget.fidelity
    # the pruner acts only where trials are compared inside their schedules
    budget = {
        "budget": spec.budget.model_copy(
            update={"train_fraction": args.train_fraction, "fidelity": MID_SCHEDULE}
        )
    }
    if args.epochs is not None:
        budget["budget"] = budget["budget"].model_copy(update={"epochs": args.epochs})
    spec = spec.model_copy(update=budget)
    overrides = parse_overrides(args.overrides) if args.overrides else {}
    base = with_overrides(spec.base_config(), overrides)
    data = load_dataset(base.data.dataset, base.data.data_dir or args.data_dir)
    maximize = spec.primary.direction == "maximize"
    console.print(
        f"study {args.study}: {args.trials} trials x 2, {spec.budget.epochs} epochs on "
        f"{100 * spec.budget.train_fraction:g} % of the training split, sampler "
        f"{spec.sampler.name} (seed {args.seed if args.seed is not None else spec.sampler.seed}),"
        f" pruner {spec.pruner.name} vs none"
    )
    results = {}
    order = [False, True] if args.order == "unpruned-first" else [True, False]
    for pruned in order:
        label = "pruned" if pruned else "unpruned"
        t0 = time.perf_counter()
        with console.status(f"running the {label} study ..."):
            study = run_study(
                spec, overrides, data, args.trials, pruned, args.seed, not args.no_enqueue
            )
        results[label] = summarize(trial_rows(study), maximize)
        console.print(f"{label}: done in {(time.perf_counter() - t0) / 60:.1f} min")
    comparison = compare(results["unpruned"], results["pruned"], args.tolerance, maximize)
    summary = {
        "study": args.study,
        "trials": args.trials,
        "epochs": spec.budget.epochs,
        "train_fraction": spec.budget.train_fraction,
        "sampler": spec.sampler.name,
        "sampler_seed": args.seed if args.seed is not None else spec.sampler.seed,
        "pruner": spec.pruner.model_dump(),
        "study_fidelity": study_fidelity,
        "metric": spec.primary.metric,
        "enqueued": 0 if args.no_enqueue else len(spec.enqueue),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "versions": {"torch": torch.__version__, "optuna": optuna.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "unpruned": results["unpruned"],
        "pruned": results["pruned"],
        "comparison": comparison,
    }
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, default=str))
    print_summary(console, summary)
    if args.json:
        console.print(f"wrote {args.json}")
    if args.readme:
        command = "python bench/pruning.py " + " ".join(sys.argv[1:] if argv is None else argv)
        device = resolve_device(base.device)
        text = render_block(summary, stamp(command.strip(), device, amp_enabled(device, base.amp)))
        rewrite_readme(args.readme, text, "pruning")
        console.print(f"rewrote the pruning block of {args.readme}")
    return summary


def render_block(s: dict[str, Any], stamp_text: str) -> str:
    """README ``RESULTS:pruning`` block: both studies side by side, the compute share and the
    provenance stamp."""
    u, p, c = s["unpruned"], s["pruned"], s["comparison"]
    pct = "{:.2%}"
    rows = [
        (
            "complete / pruned / failed",
            *("{COMPLETE} / {PRUNED} / {FAIL}".format(**r["counts"]) for r in (u, p)),
        ),
        ("training images", number(u["images"]), number(p["images"])),
        ("wall minutes", number(u["seconds"] / 60, "{:.1f}"), number(p["seconds"] / 60, "{:.1f}")),
        (f"best {s['metric']}", number(u["best_value"], pct), number(p["best_value"], pct)),
        (
            "images until the unpruned best (pruned: until within the tolerance of it)",
            number(u["images_to_best"]),
            number(c.get("images_to_reach")),
        ),
    ]
    lines = [
        f"`{s['study']}` space, {s['trials']} trials per study, {s['epochs']} epochs on "
        f"{100 * s['train_fraction']:g} % of the training split, sampler {s['sampler']} "
        f"(seed {s['sampler_seed']}), {s['enqueued']} enqueued configs; both at fidelity "
        f"`{MID_SCHEDULE}` (the pruner compares trials inside their schedules; the study's own "
        f"fidelity is `{s['study_fidelity']}`):",
        "",
        f"| | no pruning | {s['pruner']['name']} |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {d} |" for a, b, d in rows),
        "",
    ]
    if c.get("reached"):
        met = "met" if c["meets_target"] else "not met"
        lines.append(
            f"The pruned study came within {c['tolerance']:.3f} of the unpruned best with "
            f"**{c['share_to_reach']:.1%}** of its compute (target <= {TARGET_SHARE:.0%}: "
            f"{met}); the whole pruned study used {c['total_share']:.1%}."
        )
    else:
        lines.append("The pruned study never came within the tolerance of the unpruned best.")
    return "\n".join([*lines, "", stamp_text])


def print_summary(console: Console, s: dict[str, Any]) -> None:
    """The two studies side by side, then the comparison against the target."""
    table = Table(title=f"pruning benchmark: {s['study']}, {s['trials']} trials per study")
    table.add_column("")
    for col in ("no pruning", f"{s['pruner']['name']} pruner"):
        table.add_column(col, justify="right")
    u, p = s["unpruned"], s["pruned"]
    pct = "{:.2%}"
    rows = [
        (
            "complete / pruned / failed",
            *("{COMPLETE} / {PRUNED} / {FAIL}".format(**r["counts"]) for r in (u, p)),
        ),
        ("training images", number(u["images"]), number(p["images"])),
        ("training GMACs", number(u["gmacs"], "{:,.0f}"), number(p["gmacs"], "{:,.0f}")),
        ("wall minutes", number(u["seconds"] / 60, "{:.1f}"), number(p["seconds"] / 60, "{:.1f}")),
        (f"best {s['metric']}", number(u["best_value"], pct), number(p["best_value"], pct)),
        ("best trial", number(u["best_trial"], "{}"), number(p["best_trial"], "{}")),
        ("images until best", number(u["images_to_best"]), number(p["images_to_best"])),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    c = s["comparison"]
    if not c.get("reached"):
        console.print(
            f"[red]MISS[/]: the pruned study never came within {c['tolerance']:.3f} of the "
            f"unpruned best ({number(u['best_value'], pct)})"
        )
        return
    verdict = "[green]PASS[/]" if c["meets_target"] else "[red]MISS[/]"
    console.print(
        f"pruned study reached {c['threshold']:.2%} (unpruned best - {c['tolerance']:.3f}) at "
        f"trial {c['reached_at_trial']} after {c['images_to_reach']:,} images = "
        f"{c['share_to_reach']:.1%} of the unpruned study's compute "
        f"({number(c['gmacs_share_to_reach'], '{:.1%}')} in GMACs); whole pruned study: "
        f"{c['total_share']:.1%}. Target <= {TARGET_SHARE:.0%}: {verdict}"
    )


if __name__ == "__main__":
    main()
