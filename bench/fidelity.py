"""Does a study's search fidelity rank configurations like full training?

For a study, a fixed panel of configurations (its reference recipe, hand-picked ones for
``seed000``, then configurations drawn by the study's sampler with a fixed seed) is trained at
the panel's full fidelity (``--full-epochs`` on ``--train-fraction`` of the training split,
one seed) and scored at every decision point of each mechanism
(:mod:`cifar_hpo.sweep.fidelity`):

* ``mid-schedule`` (successive halving as Optuna prunes): validation accuracy at the rung epochs
  *inside* the full-length schedule (free: read off the full run's history);
* ``complete``: a separate, complete schedule of that many epochs (decay included);
* ``data-subset`` (``--subsets EPOCHS@SHARE``): a complete schedule of ``EPOCHS`` epochs on
  ``SHARE`` of the panel's training images, so that a schedule as long in epochs as the full
  one (plateau patience, warm-up and every decay counted in epochs) costs a share of it. A study
  searches this way with ``budget.fidelity: complete``, ``budget.epochs: EPOCHS`` and a smaller
  ``budget.train_fraction``.

Prints, per decision point, Spearman's rho against the full-fidelity validation accuracy, the
top-1 regret (full-fidelity points lost by keeping the low-fidelity winner) and the compute
(training images per configuration, and its share of the full run's); ``--readme`` rewrites
the README block ``RESULTS:fidelity-<study>``. Targets (issue 20): rho >= 0.8 and regret
<= 0.3 points at the first decision point of the mechanism kept::

    .venv/bin/python bench/fidelity.py --study seed000 --readme docs/results.md  # ~20 min, 2 cores
    .venv/bin/python bench/fidelity.py --study seed000 --subsets 12@0.25 6@0.5
    .venv/bin/python bench/fidelity.py --study baseline --full-epochs 8 --train-fraction 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cifar_hpo.config import parse_overrides, with_overrides
from cifar_hpo.data import load_dataset
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.engine import train
from cifar_hpo.provenance import stamp
from cifar_hpo.reports import pct, rewrite_readme
from cifar_hpo.sweep.fidelity import COMPLETE, MID_SCHEDULE, panel, rank_agreement
from cifar_hpo.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent

#: issue 20's four seed000 recipes (A is the source project's own, the study's enqueued trial 0)
SEED000_EXTRA = [
    {"optim.name": "sgd", "optim.nesterov": True, "optim.momentum": 0.9, "optim.lr": 0.05,
     "schedule.name": "onecycle", "batch_size": 128, "optim.wd": 5e-4,
     "optim.label_smoothing": 0.1, "augment.policy": "flip-crop"},
    {"optim.name": "adamw", "optim.lr": 3e-3, "schedule.name": "onecycle", "batch_size": 128,
     "optim.wd": 5e-4, "augment.policy": "flip-crop"},
    {"optim.name": "sgd", "optim.nesterov": True, "optim.momentum": 0.9, "optim.lr": 0.1,
     "schedule.name": "cosine", "batch_size": 128, "optim.wd": 5e-4, "augment.policy": "flip-crop"},
]  # fmt: skip
TARGET_RHO = 0.8
TARGET_REGRET = 0.3
DATA_SUBSET = "data-subset"


def parse_subset(text: str) -> tuple[float, float]:
    """``"12@0.25"`` -> (12 epochs, 0.25 of the panel's training images).

    Raises:
        argparse.ArgumentTypeError: not ``EPOCHS@SHARE`` with EPOCHS > 0 and 0 < SHARE <= 1.
    """
    try:
        epochs, share = (float(x) for x in text.split("@"))
    except ValueError:
        epochs = share = float("nan")
    if not (epochs > 0 and 0 < share <= 1):
        raise argparse.ArgumentTypeError(
            f"subset {text!r}: expected EPOCHS@SHARE, e.g. 12@0.25 (epochs > 0, 0 < share <= 1)"
        )
    return (int(epochs) if epochs.is_integer() else epochs), share


def subset_label(subset: tuple[float, float]) -> str:
    """``(12, 0.25)`` -> ``"12@0.25"``, the key of a data-subset score in a row."""
    return f"{subset[0]:g}@{subset[1]:g}"


def score_panel(args, spec, configs, data) -> list[dict[str, Any]]:
    """Train each configuration at full fidelity and at each complete short schedule."""
    base = spec.base_config()
    common = {"data.train_fraction": args.train_fraction, "seed": args.seed,
              **parse_overrides(args.set)}  # fmt: skip
    rows = []
    for i, params in enumerate(configs):
        row: dict[str, Any] = {
            "params": params,
            "complete": {},
            DATA_SUBSET: {},
            "subset_images": {},
        }
        full_cfg = with_overrides(base, {**params, **common, "epochs": args.full_epochs})
        t0 = time.perf_counter()
        full = train(full_cfg, data, evaluate_test=False)
        history = {int(r["epoch"]): r.get("val_acc", float("nan")) for r in full.history}
        row["full"] = history.get(args.full_epochs, float("nan"))
        row["mid"] = {d: history.get(d, float("nan")) for d in args.rungs}
        row["images_per_epoch"] = len(full.history) and full.images_seen / len(full.history)
        for d in args.complete_epochs:
            cfg = with_overrides(base, {**params, **common, "epochs": d})
            short = train(cfg, data, evaluate_test=False)
            row["complete"][d] = short.history[-1].get("val_acc", float("nan"))
        for epochs, share in args.subsets:
            fraction = {"data.train_fraction": args.train_fraction * share, "epochs": epochs}
            cfg = with_overrides(base, {**params, **common, **fraction})
            small = train(cfg, data, evaluate_test=False)
            label = subset_label((epochs, share))
            row[DATA_SUBSET][label] = small.history[-1].get("val_acc", float("nan"))
            row["subset_images"][label] = small.images_seen
        row["seconds"] = time.perf_counter() - t0
        print(
            f"config {i}: full {pct(row['full'])}, mid "
            + ", ".join(f"@{d} {100 * v:.2f}" for d, v in row["mid"].items())
            + ", complete "
            + ", ".join(f"{d} ep {100 * v:.2f}" for d, v in row["complete"].items())
            + "".join(f", subset {k} {100 * v:.2f}" for k, v in row[DATA_SUBSET].items())
            + f" ({row['seconds']:.0f} s) {json.dumps(params)}",
            flush=True,
        )
        rows.append(row)
    return rows


def agreement_table(rows, rungs, complete_epochs, full_epochs, subsets=()) -> list[dict]:
    """One line per (mechanism, decision point): rho, regret, compute share (training images
    of the decision over those of the full run)."""
    full = [r["full"] for r in rows]
    points = [(MID_SCHEDULE, "mid", d, d, 1.0) for d in rungs]
    points += [(COMPLETE, "complete", d, d, 1.0) for d in complete_epochs]
    points += [(DATA_SUBSET, DATA_SUBSET, subset_label(s), s[0], s[1]) for s in subsets]
    out = []
    for mechanism, key, point, epochs, images in points:
        a = rank_agreement([r[key][point] for r in rows], full)
        out.append({"mechanism": mechanism, "epochs": epochs, "images": images,
                    "rho": a.rho, "regret": a.regret, "kept": a.kept, "best": a.best,
                    "share": epochs * images / full_epochs})  # fmt: skip
    return out


def decision_text(t: dict[str, Any]) -> str:
    """Where a mechanism decides, as the block's table says it."""
    if t["mechanism"] == MID_SCHEDULE:
        return f"epoch {t['epochs']:g}"
    if t["mechanism"] == COMPLETE:
        return f"complete schedule of {t['epochs']:g}"
    return f"complete schedule of {t['epochs']:g} on {100 * t['images']:g} % of the images"


def render(args, rows, table, stamp_text, command) -> str:
    lines = [
        f"<!-- written by `{command}`; do not edit by hand -->",
        "",
        f"**Fidelity of `{args.study}`'s decisions** on a panel of {len(rows)} configurations "
        f"(the recipe first), full fidelity {args.full_epochs} epochs on data.train_fraction "
        f"{args.train_fraction:g} (validation accuracy, seed {args.seed}):",
        "",
        "| mechanism | decision at | compute of full | Spearman rho | top-1 regret (points) |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in table:
        lines.append(
            f"| {t['mechanism']} | {decision_text(t)} | {100 * t['share']:.0f} % | "
            f"{t['rho']:.2f} | {t['regret']:.2f} |"
        )
    labels = [subset_label(s) for s in args.subsets]
    heads = [f"@{d}" for d in args.rungs] + [f"complete {d}" for d in args.complete_epochs]
    heads += [f"subset {k}" for k in labels]
    lines += ["", "| config | full | " + " | ".join(heads) + " |",
              "|---|---:|" + "---:|" * len(heads)]  # fmt: skip
    for i, r in enumerate(rows):
        cells = [r["mid"][d] for d in args.rungs] + [r["complete"][d] for d in args.complete_epochs]
        cells += [r[DATA_SUBSET][k] for k in labels]
        lines.append(
            f"| {i}{' (recipe)' if i == 0 else ''} | {100 * r['full']:.2f} | "
            + " | ".join(f"{100 * v:.2f}" for v in cells)
            + " |"
        )
    first = {
        MID_SCHEDULE: next(t for t in table if t["mechanism"] == MID_SCHEDULE),
        COMPLETE: next(
            (t for t in table if t["mechanism"] == COMPLETE and t["epochs"] == args.kept),
            next(t for t in table if t["mechanism"] == COMPLETE),
        ),
    }
    subset = [t for t in table if t["mechanism"] == DATA_SUBSET]
    if subset:
        first[DATA_SUBSET] = subset[0]
    checks = [
        f"{m} at its first decision: rho {t['rho']:.2f} "
        f"({'met' if t['rho'] >= TARGET_RHO else 'NOT met'} >= {TARGET_RHO}), regret "
        f"{t['regret']:.2f} ({'met' if t['regret'] <= TARGET_REGRET else 'NOT met'} <= "
        f"{TARGET_REGRET})"
        for m, t in first.items()
    ]
    lines += [
        "",
        f"Targets (issue 20), at the first decision of each mechanism (complete: the schedule "
        f"of {args.kept:g} epochs the study searches with"
        + (f"; {DATA_SUBSET}: its first subset" if subset else "")
        + "): "
        + "; ".join(checks)
        + ".",
        "",
        stamp_text,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="seed000")
    parser.add_argument("--sweeps-dir", type=Path, default=ROOT / "sweeps")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--size", type=int, default=8, help="configurations in the panel")
    parser.add_argument("--full-epochs", type=int, default=12)
    parser.add_argument("--train-fraction", type=float, default=0.3)
    parser.add_argument(
        "--rungs",
        type=int,
        nargs="+",
        default=None,
        help="mid-schedule decision epochs (default: the study pruner's rungs)",
    )
    parser.add_argument("--complete-epochs", type=float, nargs="+", default=[1, 3])
    parser.add_argument(
        "--kept",
        type=float,
        default=None,
        help="complete-schedule epochs the study searches with (default: its "
        "budget.epochs when its fidelity is complete, else the first)",
    )
    parser.add_argument(
        "--subsets",
        type=parse_subset,
        nargs="*",
        default=[],
        help="data-subset decisions, EPOCHS@SHARE: a complete schedule of EPOCHS epochs on "
        "SHARE of the panel's training images (e.g. 12@0.25)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], help="config override (smoke runs)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--readme", default=None)
    parser.add_argument(
        "--block",
        default=None,
        help="README block to rewrite (default: fidelity-<study>); a second panel of one study "
        "(another full fidelity) keeps its own block",
    )
    args = parser.parse_args(argv)
    spec = load_spec(args.study, args.sweeps_dir)
    if args.rungs is None:
        r, args.rungs = spec.pruner.min_resource, []
        while r < args.full_epochs:
            args.rungs.append(r)
            r *= spec.pruner.reduction_factor
    args.complete_epochs = [int(d) if float(d).is_integer() else d for d in args.complete_epochs]
    if args.kept is None:
        complete = spec.budget.fidelity == COMPLETE and spec.budget.epochs in args.complete_epochs
        args.kept = spec.budget.epochs if complete else args.complete_epochs[0]
    extra = SEED000_EXTRA if args.study == "seed000" else []
    configs = panel(spec, args.size, extra, seed=args.seed)
    base = spec.base_config()
    data = load_dataset(base.data.dataset, base.data.data_dir or args.data_dir)
    rows = score_panel(args, spec, configs, data)
    table = agreement_table(rows, args.rungs, args.complete_epochs, args.full_epochs, args.subsets)
    device = resolve_device(base.device)
    command = "python bench/fidelity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp_text = stamp(command.strip(), device, amp_enabled(device, base.amp), ROOT)
    text = render(args, rows, table, stamp_text, command.strip())
    print(text)
    report = {"rows": rows, "table": table}
    if args.readme:  # before the JSON: the block is what the run is for
        rewrite_readme(args.readme, text, args.block or f"fidelity-{args.study}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
