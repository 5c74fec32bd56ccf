"""Sweep report: what a finished study gave, written into a README block (``RESULTS:sweep`` by
default, ``--block NAME`` for another).

Read from the Optuna storage (no training): trials per state (infeasible ones counted), the
study's wall time (first trial start to last trial end, in minutes), the champion's number,
validation value, test accuracy, parameters and registry version, the refit of its
configuration at full fidelity when the study made one, each export rule's pick, and for a
multi-objective study its Pareto front as a table; stamped with commit, date, machine, precision
and library versions (:mod:`cifar_hpo.provenance`). ``--plots DIR`` also copies the parent run's
Pareto-front and parameter-importance plots from MLflow into ``DIR`` and shows them in the
block. Run it after ``cifar-hpo sweep``::

    .venv/bin/python bench/sweep_report.py --study baseline --readme docs/results.md
    .venv/bin/python bench/sweep_report.py --study quick --storage sqlite:///studies/optuna.db
    .venv/bin/python bench/sweep_report.py --study seed004_under_200k --block sweep-seed004 \
        --plots docs/seed004 --readme docs/results.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from cifar_hpo.config import TrainConfig
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.provenance import stamp
from cifar_hpo.reproduce.table import pct, rewrite_readme
from cifar_hpo.sweep.finalists import RACE_ATTR
from cifar_hpo.sweep.ranking import (
    front_rows,
    is_feasible,
    objective_names,
    primary_value,
    rule_pick,
    trial_measure,
)
from cifar_hpo.sweep.report import best_trial, state_counts
from cifar_hpo.sweep.spec import SweepSpecError, load_spec
from cifar_hpo.sweep.storage import make_storage

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "sweep"


def study_report(study: optuna.Study, rules: dict | None = None) -> dict[str, Any]:
    """Counts per state, wall minutes, the champion, its refit, the picks of ``rules``
    (alias -> limits) and, for several objectives, the Pareto front of ``study``.

    Raises:
        SweepSpecError: the study has no trial yet.
    """
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise SweepSpecError(f"study {study.study_name!r} has no trials yet")
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    minutes = (max(ends) - min(starts)).total_seconds() / 60 if starts and ends else None
    best = best_trial(study)
    champion = study.user_attrs.get("champion") or {}
    refit = study.user_attrs.get("refit") or {}
    names = objective_names(study)
    return {
        "study": study.study_name,
        "objectives": names,
        "counts": state_counts(study),
        "infeasible": sum(1 for t in trials if t.state.name == "COMPLETE" and not is_feasible(t)),
        "minutes": minutes,
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": primary_value(best),
            "params": dict(best.params),
            "num_params": trial_measure(study, best, "params"),
            "test_acc": best.user_attrs.get("test_acc"),
            "registry_version": champion.get("version")
            if champion.get("trial") == best.number
            else None,
        },
        "refit": refit if best is not None and refit.get("trial") == best.number else None,
        "reference_refit": study.user_attrs.get("reference_refit"),
        "rules": {
            alias: (pick.number if (pick := rule_pick(study, limits)) is not None else None)
            for alias, limits in (rules or {}).items()
        },
        "front": front_rows(study) if len(names) > 1 else None,
        "race": study.user_attrs.get(RACE_ATTR),
        "budget": study.user_attrs.get("budget"),
        "parent_run_id": study.user_attrs.get("mlflow_parent_run_id"),
    }


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _cell(name: str, v: Any) -> str:
    if v is None:
        return "-"
    if name in ("params", "macs"):
        return f"{v:,.0f}"
    if name in ("val_acc", "test_acc", "val_f1_macro", "val_top5"):
        return f"{100 * v:.2f} %"
    return _value(v)


def _objective(report: dict[str, Any], value: float, bold: bool = False, label: str = "") -> str:
    """A search value in the study's first objective: accuracies in percent, else the number
    (``val_loss`` of seed001)."""
    name = report["objectives"][0]
    mark = "**" if bold else ""
    if "loss" not in name:
        return f"{label}{mark}{100 * value:.2f} %{mark}"
    return f"`{name}` {mark}{value:.4f}{mark}"


def _refit_accuracies(refit: dict[str, Any]) -> str:
    return f"validation {pct(refit.get('val_acc'))}, test **{pct(refit.get('test_acc'))}**"


def render(
    report: dict[str, Any], command: str, stamp_text: str, plots: list[str] | None = None
) -> str:
    """The README block for ``report`` (``plots``: image paths relative to the README)."""
    c, best = report["counts"], report["best"]
    minutes = "-" if report["minutes"] is None else f"{report['minutes']:.0f}"
    infeasible = f" ({report['infeasible']} of them infeasible)" if report.get("infeasible") else ""
    budget, race = report.get("budget"), report.get("race")
    # a budgeted study's wall time includes its refit or race, which no trial spans
    wall = (
        f"**{budget['used_s'] / 60:.0f} min** wall time (search trials {minutes} min)"
        if budget
        else f"**{minutes} min** wall time"
    )
    lines = [
        f"<!-- generated by `{command}`; do not edit by hand -->",
        "",
        f"Study `{report['study']}`: {wall}, **{c['COMPLETE']} complete"
        f"{infeasible}, {c['PRUNED']} pruned, {c['FAIL']} failed** trials.",
    ]
    if budget:
        lines[-1] += (
            f" Budget: {budget['used_s'] / 60:.1f} of {budget['total_s'] / 60:.0f} min used, "
            "search and refit."
        )
    if best is not None:
        params = ", ".join(f"`{k}` {_value(v)}" for k, v in sorted(best["params"].items()))
        # budget.search_test false: search trials leave the test set to the refit and race
        test = "" if best["test_acc"] is None else f", test **{100 * best['test_acc']:.2f} %**"
        size = "" if best.get("num_params") is None else f", {best['num_params']:,.0f} parameters"
        promoted = race.get("promoted_trial") if race else None
        if promoted is not None and promoted != best["number"]:
            head = "Best search trial"
            registry = f"not the registry's `champion`: the race below promoted trial {promoted}"
            registry += " (the recipe)" if race.get("promoted_reference") else ""
        else:
            head = "Champion"
            registry = (
                f"registry `cifar-hpo-{report['study']}` version "
                f"{best['registry_version'] or '-'}, alias `champion`"
            )
        shown = _objective(report, best["value"], True, "validation ")
        lines += [
            "",
            f"{head}: trial {best['number']}, {shown}"
            f"{test} at the study's per-trial budget{size} ({registry}); {params}.",
        ]
    refit, reference = report.get("refit"), report.get("reference_refit")
    if refit:
        lines += [
            "",
            f"Refit of that configuration on the whole training split ({refit['epochs']:g} "
            f"epochs, {refit['seconds'] / 60:.1f} min), the registered champion: "
            f"{_refit_accuracies(refit)}.",
        ]
    if reference:
        lines += [
            "",
            f"The reference recipe (trial {reference['trial']}, "
            f"{_objective(report, reference['search_value'])} at search fidelity) refit with "
            f"the same {reference['epochs']:g} epochs: {_refit_accuracies(reference)}.",
        ]
    if race:
        arms = "; ".join(
            f"trial {a['trial']}{' (recipe)' if a['reference'] else ''}: "
            + ", ".join(pct(v) for v in a["test_acc"])
            for a in race["arms"]
        )
        lines += [
            "",
            f"Finalists raced at {race['epochs']:g} epochs (test accuracy per seed): {arms}. "
            f"Result: {race['summary']}.",
        ]
    for alias, number in (report.get("rules") or {}).items():
        lines += ["", f"Alias `{alias}`: trial {number if number is not None else '- (none)'}."]
    front = report.get("front")
    if front:
        cols = ["trial", *report["objectives"]]
        cols += [k for k in ("params", "macs", "test_acc") if k not in cols]
        lines += [
            "",
            f"Pareto front ({len(front)} trials, best first on `{report['objectives'][0]}`):",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        lines += ["| " + " | ".join(_cell(k, row.get(k)) for k in cols) + " |" for row in front]
    for path in plots or []:
        lines += ["", f"![{Path(path).stem}]({path})"]
    lines += ["", stamp_text]
    return "\n".join(lines)


def copy_plots(parent_run_id: str | None, folder: Path, readme: Path | None) -> list[str]:
    """Download the parent run's Pareto-front and importance plots into ``folder``; returns
    their paths relative to the README's folder (or as given)."""
    if not parent_run_id:
        return []
    import shutil
    import tempfile

    from cifar_hpo.tracking import Tracker

    tracker = Tracker()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("pareto_front.png", "param_importances.png"):
        with tempfile.TemporaryDirectory() as tmp:
            local = tracker.download_artifact(parent_run_id, f"plots/{name}", tmp)
            if local is None:  # a plot the study could not draw
                continue
            shutil.copyfile(local, folder / name)
        target = folder / name
        base = readme.resolve().parent if readme is not None else None
        written.append(os.path.relpath(target.resolve(), base) if base else str(target))
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default="baseline")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default studies/)")
    p.add_argument("--readme", type=Path, default=None, help="rewrite its results block")
    p.add_argument("--block", default=BLOCK, help="README block name (RESULTS:<block>)")
    p.add_argument("--plots", type=Path, default=None, help="copy the parent run's plots here")
    args = p.parse_args(argv)
    try:
        study = optuna.load_study(study_name=args.study, storage=make_storage(args.storage))
    except KeyError:
        sys.exit(f"error: unknown study {args.study!r}; run: cifar-hpo sweep --study {args.study}")
    base, rules = TrainConfig(), {}
    if (ROOT / "sweeps" / f"{args.study}.yaml").exists():  # the device/precision it ran with
        spec = load_spec(args.study, ROOT / "sweeps")
        base, rules = spec.base_config(), spec.rules
    report = study_report(study, rules)
    plots = copy_plots(report["parent_run_id"], args.plots, args.readme) if args.plots else []
    device = resolve_device(base.device)
    command = "python bench/sweep_report.py " + " ".join(sys.argv[1:] if argv is None else argv)
    amp = amp_enabled(device, base.amp)
    text = render(report, command.strip(), stamp(command.strip(), device, amp, ROOT), plots)
    print(text)
    if args.readme is not None:
        rewrite_readme(args.readme, text, args.block)
    return report


if __name__ == "__main__":
    main()
