"""The study's MLflow runs besides each trial's own: the parent run's params at the start
(:func:`spec_summary`) and its summary and plots at the end (:func:`finish_parent`), and the
trial runs killed workers left RUNNING (:func:`reconcile_runs`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna

from cifar_hpo.sweep.finalists import RACE_ATTR, race_metrics
from cifar_hpo.sweep.refit import REFERENCE_REFIT_ATTR, REFIT_ATTR
from cifar_hpo.sweep.report import study_plots, study_summary
from cifar_hpo.sweep.spec import SweepSpec, objective_text
from cifar_hpo.sweep.storage import FAIL_REASON_ATTR, RUN_ID_ATTR
from cifar_hpo.tracking import RunOutcome, Tracker, TrialRun


def spec_summary(study_name: str, spec: SweepSpec) -> dict[str, Any]:
    """The parent run's params: objectives, constraints, rules, sampler, pruner, budget and the
    searched names."""
    extra: dict[str, Any] = {}
    if spec.constraints:
        extra["constraints"] = json.dumps(
            {k: v.model_dump(exclude_none=True) for k, v in spec.constraints.items()}
        )
    if spec.rules:
        extra["rules"] = ", ".join(spec.rules)
    return {
        **extra,
        "study": study_name,
        "objective": objective_text(spec),
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "budget.epochs": spec.budget.epochs,
        "budget.train_fraction": spec.budget.train_fraction,
        "top_k_models": spec.top_k_models,
        "search_space": ", ".join(spec.space),
    }


def finish_parent(study: optuna.Study, tracker: Tracker, run_id: str, status: str) -> None:
    """Log the study summary (trial counts, best value) and Optuna's plots to the parent run
    and set its status; the status is set even if the summary or a plot fails."""
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            summary = study_summary(study)
            metrics = {f"trials_{s.lower()}": n for s, n in summary["counts"].items()}
            if summary["best_value"] is not None:
                metrics["best_value"] = summary["best_value"]
            for attr, prefix in ((REFIT_ATTR, "refit"), (REFERENCE_REFIT_ATTR, "reference_refit")):
                refit = study.user_attrs.get(attr) or {}
                for key in ("search_value", "val_acc", "test_acc", "epochs"):
                    if refit.get(key) is not None:
                        metrics[f"{prefix}_{key}"] = float(refit[key])
            race = study.user_attrs.get(RACE_ATTR)
            if race:  # the finalists' race and its statistics: metrics and a JSON artifact
                metrics.update(race_metrics(race))
                Path(tmp, "race.json").write_text(json.dumps(race, indent=1, default=str))
            Path(tmp, "study_summary.json").write_text(json.dumps(summary, indent=1, default=str))
            if summary["pareto_front"] is not None:  # the front as its own table
                front = json.dumps(summary["pareto_front"], indent=1, default=str)
                Path(tmp, "pareto_front.json").write_text(front)
            study_plots(study, Path(tmp) / "plots")
        except Exception as err:  # noqa: BLE001 - the run is closed below whatever happens
            warnings.warn(f"study summary incomplete: {err}", stacklevel=2)
        tracker.finish_run(run_id, status, metrics, tmp)


def reconcile_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Close MLflow runs left RUNNING by killed workers: a trial run whose Optuna trial is no
    longer RUNNING is terminated with the matching outcome (FAILED for a failed trial). Run this
    after :func:`~cifar_hpo.sweep.storage.fail_stale_trials`. Returns how many were fixed."""
    running = tracker.running_trial_runs(study.study_name)
    if not running:
        return 0
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    fixed = 0
    for run_id, number in running:
        t = trials.get(number)
        outcome = RunOutcome.of_trial_state(t.state.name) if t is not None else None
        if outcome is None:
            continue  # still running somewhere, or not this study's trial
        if t.user_attrs.get(RUN_ID_ATTR, run_id) != run_id:
            continue  # the trial's own run is another one
        reason = t.user_attrs.get(FAIL_REASON_ATTR) or "worker stopped before closing this run"
        run = TrialRun(tracker, run_id)
        run.is_trial = True
        run.end(outcome, reason)
        fixed += 1
    return fixed
