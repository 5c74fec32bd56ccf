"""Source-project table: each source project's recipe vs the same problem tuned by cifar-hpo,
at the source project's own epoch budget, written into the README block ``RESULTS:per-seed``.

Read from the Optuna storage (no training). For every per-source-project study
(``sweeps/seed000.yaml`` ...; the source project is the recipe of ``sweeps/recipes.yaml`` whose
``project`` is the study's name) the row gives the source project's own reported figure, the
test accuracy of the source project's recipe refit by the study (``budget.refit_reference``: the
enqueued recipe, trial 0, trained with the same epochs as the champion) and of the tuned
champion's refit, their difference, the trials per state and the budget used. A study not in
the storage gets a row saying so and the time its spec asks for. Stamped with commit, date,
machine, precision and versions. Run it after the budgeted studies::

    cifar-hpo sweep --study seed000          # 30 minutes on a 2-core CPU
    .venv/bin/python bench/per_seed.py --readme README.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import optuna

from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.provenance import stamp
from cifar_hpo.reports import pct, points, rewrite_readme
from cifar_hpo.reproduce.recipes import load_recipes
from cifar_hpo.sweep.budget import BUDGET_ATTR
from cifar_hpo.sweep.finalists import RACE_ATTR
from cifar_hpo.sweep.refit import REFERENCE_REFIT_ATTR, REFIT_ATTR
from cifar_hpo.sweep.report import state_counts
from cifar_hpo.sweep.spec import load_spec
from cifar_hpo.sweep.storage import make_storage

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "per-seed"
STUDIES = ("seed000", "seed001", "seed002", "seed003")
COLUMNS = (
    "study",
    "model",
    "epochs",
    "source project reports",
    "its recipe here",
    "tuned by cifar-hpo",
    "difference (95 % CI and Welch p across seeds; exact McNemar p)",
    "registry champion",
    "trials (complete / pruned / failed)",
    "minutes used / budget",
)


def seed_row(name: str, storage: str | None, sweeps_dir: Path) -> dict[str, Any]:
    """One study's row: the recipe's and the champion's refit test accuracies (fractions),
    the source project's reported text, trial counts and minutes; ``ran`` False when the
    storage has no such study.

    Raises:
        SweepSpecError: ``sweeps_dir`` has no valid ``<name>.yaml``.
    """
    spec = load_spec(name, sweeps_dir)
    recipes = {r.project: r for r in load_recipes(sweeps_dir / "recipes.yaml").recipes}
    recipe = recipes.get(name)
    row: dict[str, Any] = {
        "study": name,
        "model": spec.base.get("model.name", "-"),
        "epochs": spec.budget.refit_epochs or spec.budget.epochs,
        "reported": recipe.reported.text if recipe is not None and recipe.reported else "-",
        "budget_min": spec.budget.minutes,
        "ran": False,
    }
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(storage))
    except KeyError:
        return row
    refit = study.user_attrs.get(REFIT_ATTR) or {}
    reference = study.user_attrs.get(REFERENCE_REFIT_ATTR) or {}
    budget = study.user_attrs.get(BUDGET_ATTR) or {}
    race = study.user_attrs.get(RACE_ATTR) or {}
    arms = race.get("arms", [])
    ref_arm = next((a for a in arms if a["reference"]), None)
    rival = race.get("champion_trial")
    if ref_arm is not None and rival == ref_arm["trial"]:  # the recipe won: its best challenger
        rival = next((a["trial"] for a in arms if not a["reference"]), None)
    tuned_arm = next((a for a in arms if a["trial"] == rival), None)
    row.update(
        ran=True,
        counts=state_counts(study),
        recipe_test=_mean(ref_arm["test_acc"]) if ref_arm else reference.get("test_acc"),
        tuned_test=_mean(tuned_arm["test_acc"]) if tuned_arm else refit.get("test_acc"),
        seeds=len(tuned_arm["test_acc"]) if tuned_arm else 1,
        recipe_seeds=len(ref_arm["test_acc"]) if ref_arm else 1,
        comparison=race.get("comparison"),
        promoted="recipe" if race.get("promoted_reference") else "tuned",
        epochs=refit.get("epochs", row["epochs"]),
        champion_trial=rival if tuned_arm else refit.get("trial"),
        used_min=budget.get("used_s", 0.0) / 60 if budget else None,
        budget_min=budget.get("total_s", 0.0) / 60 if budget else row["budget_min"],
    )
    return row


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _cells(row: dict[str, Any]) -> list[str]:
    budget = "-" if row["budget_min"] is None else f"{row['budget_min']:.0f}"
    head = [f"`{row['study']}`", f"`{row['model']}`", f"{row['epochs']:g}", row["reported"]]
    if not row["ran"]:
        return [*head, f"not run in this storage (spec: {budget} min)", "-", "-", "-", "-", "-"]
    recipe, tuned = row["recipe_test"], row["tuned_test"]
    diff = points(None if recipe is None or tuned is None else tuned - recipe)
    if row["recipe_test"] is not None and row["tuned_test"] is not None:
        diff += f" on {row['seeds']} vs {row['recipe_seeds']} seeds"
    cmp = row.get("comparison")
    if cmp:
        stats = []
        if cmp.get("welch"):
            welch = cmp["welch"]
            stats.append(
                f"{welch['low']:+.2f} to {welch['high']:+.2f}, Welch p = {welch['p_value']:.2g}"
            )
        if cmp.get("mcnemar"):
            stats.append(f"McNemar p = {cmp['mcnemar']['p_value']:.2g}")
        diff += f" ({'; '.join(stats)})" if stats else ""
    c = row["counts"]
    used = "-" if row["used_min"] is None else f"{row['used_min']:.1f}"
    champion = "" if row["champion_trial"] is None else f" (trial {row['champion_trial']})"
    return [
        *head,
        pct(recipe),
        f"**{pct(tuned)}**{champion}",
        diff,
        row.get("promoted", "-"),
        f"{c['COMPLETE']} / {c['PRUNED']} / {c['FAIL']}",
        f"{used} / {budget}",
    ]


def render(rows: list[dict[str, Any]], command: str, stamp_text: str) -> str:
    """The README block: one table row per study, then the stamp."""
    lines = [
        f"<!-- generated by `{command}`; do not edit by hand -->",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
        "",
        "*its recipe here* is the source project's recipe (trial 0 of the study) raced beside the "
        "finalists with their epochs and seeds; *tuned by cifar-hpo* is the best finalist; "
        "both mean test top-1 over the race's seeds on the 10,000 test images. The registry's "
        "`champion` is the tuned model only where it beats the recipe significantly (the "
        "study's `refit.alpha`: Welch's p across seeds where both arms have 2 or more, else "
        "McNemar's); the interval is Welch's across seeds, McNemar's the exact test of the two "
        "first-seed models' per-image correctness.",
        "",
        stamp_text,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--study", action="append", help="study of a source project (default: seed000..003)"
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL (default studies/)")
    p.add_argument("--sweeps-dir", type=Path, default=ROOT / "sweeps")
    p.add_argument("--readme", type=Path, default=None, help="rewrite its per-seed block")
    args = p.parse_args(argv)
    rows = [seed_row(name, args.storage, args.sweeps_dir) for name in args.study or STUDIES]
    device = resolve_device("auto")
    command = "python bench/per_seed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(
        rows, command.strip(), stamp(command.strip(), device, amp_enabled(device, "auto"), ROOT)
    )
    print(text)
    if args.readme is not None:
        rewrite_readme(args.readme, text, BLOCK)
    return rows


if __name__ == "__main__":
    main()
