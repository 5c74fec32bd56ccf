"""Finalists raced at full fidelity on seeds, and significance-gated promotion.

A trial's value ranks configurations at low fidelity, with one seed's noise. After the search,
:func:`race` retrains the ``refit.finalists`` best distinct configurations at the refit fidelity
(the whole training split, the refit's epochs) with ``refit.seeds`` random seeds each, and the
study's reference recipe (its first ``enqueue`` entry) beside them with the same epochs and
seeds. The champion is the finalist with the best mean: mean validation accuracy when the refit
holds a validation split out, else mean test accuracy (then the gate below divides ``alpha`` by
the number of finalists, Bonferroni, since the pick and the test share the test set).

The champion is compared with the reference on the test set (:func:`cifar_hpo.stats.compare_arms`:
Welch's 95 % interval across seeds with >= 2 seeds per arm, and always the exact McNemar test of
the two arms' first-seed models). It becomes the registry's ``champion`` only if it is
significantly better at ``refit.alpha``; otherwise the reference recipe's refit is registered as
``champion`` and the summary says so. Only the promoted arm's first-seed model is logged.

Runs go round-robin over seeds (every arm's first seed, then every arm's second, ...), so that a
race cut short by the budget compares arms on equal seeds.

:func:`cifar_hpo.sweep.race_plan.plan_finalists` fits finalists x seeds x epochs into the seconds
the plan keeps for the race.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from cifar_hpo.config import TrainConfig
from cifar_hpo.data import CifarData
from cifar_hpo.record import RACE_ATTR  # noqa: F401 (re-exported)
from cifar_hpo.stats import Comparison, compare_arms, pack_correct
from cifar_hpo.sweep.budget import BudgetClock, format_minutes
from cifar_hpo.sweep.objective import TRAIN_SPEED_ATTR
from cifar_hpo.sweep.plan import SweepPlan, end_reserve, epoch_seconds, test_pass_seconds
from cifar_hpo.sweep.race_plan import FinalistPlan, plan_finalists
from cifar_hpo.sweep.ranking import best_trial, ranked_trials
from cifar_hpo.sweep.refit import (
    REFERENCE_REFIT_ATTR,
    REFIT_ATTR,
    RefitResult,
    reference_trial,
    refit_run,
)
from cifar_hpo.sweep.spec import SweepSpec
from cifar_hpo.tracking import NullTracker, Tracker, TrialRun
from cifar_hpo.tta import tta_passes


def pick_finalists(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` best feasible completed trials with distinct parameters, best first."""
    picked, seen = [], set()
    for t in ranked_trials(study, feasible_only=True):
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            picked.append(t)
        if len(picked) == k:
            break
    return picked


@dataclass
class Arm:
    """One configuration in the race: its runs (one per seed) and the first seed's model."""

    trial: optuna.trial.FrozenTrial
    reference: bool
    runs: list[RefitResult] = field(default_factory=list)
    correct: np.ndarray | None = None  # first seed's per-image test correctness (N,)
    first_result: Any = None  # first seed's training Result (its model, logged if promoted)

    def accuracies(self, key: str) -> list[float]:
        return [getattr(r, key) for r in self.runs if getattr(r, key) is not None]

    def mean(self, key: str) -> float:
        values = self.accuracies(key)
        return float(np.mean(values)) if values else -math.inf

    def record(self) -> dict[str, Any]:
        return {
            "trial": self.trial.number,
            "reference": self.reference,
            "params": dict(self.trial.params),
            "seeds": [r.seed for r in self.runs],
            "test_acc": self.accuracies("test_acc"),
            "val_acc": self.accuracies("val_acc"),
            "run_ids": [r.run_id for r in self.runs],
            "epochs": [r.epochs for r in self.runs],
            "seconds": [r.seconds for r in self.runs],
            "correct": pack_correct(self.correct) if self.correct is not None else None,
        }


@dataclass
class RaceOutcome:
    """What :func:`race` decided.

    Attributes:
        arms: every arm raced (finalists, then the reference when it is not one of them).
        champion: the finalist with the best mean.
        promoted: the arm registered as ``champion`` (the champion, or the reference when the
            champion is not significantly better).
        comparison: champion (or, when the reference is the best finalist, the best challenger)
            vs reference; None without a reference or a challenger.
        summary: one line for the sweep's output, ``best`` and the parent run.
    """

    arms: list[Arm]
    champion: Arm
    promoted: Arm
    comparison: Comparison | None
    selected_on: str
    alpha: float
    summary: str

    def record(self) -> dict[str, Any]:
        return {
            "epochs": self.promoted.runs[0].epochs,
            "arms": [a.record() for a in self.arms],
            "champion_trial": self.champion.trial.number,
            "promoted_trial": self.promoted.trial.number,
            "promoted_reference": self.promoted.reference,
            "selected_on": self.selected_on,
            "alpha": self.alpha,
            "comparison": self.comparison.as_dict() if self.comparison else None,
            "summary": self.summary,
        }


def race(
    study: optuna.Study,
    base: TrainConfig,
    data: CifarData,
    plan: FinalistPlan,
    *,
    tracker: Tracker | NullTracker,
    parent_run_id: str | None,
    holdout: bool,
    alpha: float,
    time_left: Callable[[], float] | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> RaceOutcome | None:
    """Race the study's top ``plan.finalists`` configurations and its reference recipe (with
    ``plan.reference``) on ``plan.seeds`` seeds (``base.seed``, ``base.seed + 1``, ...) at
    ``plan.epochs`` epochs, pick and gate the champion (see the module docstring), log the
    promoted arm's model and record the race on the study (``race``, ``refit`` = the promoted
    arm's first-seed refit, ``reference_refit``). ``time_left()``: seconds left for the race;
    a run that would not fit is not started. Returns None when no run completed.

    Raises:
        Exception: what training raised (that run is ended FAILED first).
    """
    finalists = pick_finalists(study, plan.finalists)
    if not finalists or plan.epochs <= 0:
        return None
    arms = [Arm(t, reference=False) for t in finalists]
    ref_trial = reference_trial(study) if plan.reference else None
    if ref_trial is not None:
        same = next((a for a in arms if a.trial.number == ref_trial.number), None)
        if same is not None:
            same.reference = True
        else:
            arms.append(Arm(ref_trial, reference=True))
    for i in range(plan.seeds):
        for arm in arms:
            if time_left is not None and time_left() < 0.95 * plan.arm_run_s(arm.reference):
                say(f"race: stopped before seed {i + 1} of trial {arm.trial.number}: no time left")
                break
            _run_arm(study, base, data, arm, plan.epochs, base.seed + i, tracker,
                     parent_run_id, holdout, say)  # fmt: skip
        else:
            continue
        break
    arms = [a for a in arms if a.runs]
    if not arms:
        return None
    seeds = min(len(a.runs) for a in arms)
    for a in arms:  # compare on equal seeds
        a.runs = a.runs[:seeds]
    outcome = decide(arms, holdout, alpha)
    _log_promoted(outcome.promoted, data, tracker)
    _record(study, outcome)
    say(f"race: {outcome.summary}")
    return outcome


def decide(arms: list[Arm], holdout: bool, alpha: float) -> RaceOutcome:
    """Pick the champion (the arm with the best mean, see the module docstring) and gate its
    promotion against the reference arm at ``alpha`` (``alpha`` / challengers when picked on
    the test set)."""
    key = "val_acc" if holdout else "test_acc"
    selected_on = "validation" if holdout else "test"
    champion = max(arms, key=lambda a: (a.mean(key), a.mean("test_acc"), -a.trial.number))
    reference = next((a for a in arms if a.reference), None)
    challengers = [a for a in arms if not a.reference]
    if reference is None or not challengers:
        summary = f"champion: trial {champion.trial.number} ({_means(champion)})"
        return RaceOutcome(arms, champion, champion, None, selected_on, alpha, summary)
    level = alpha if holdout else alpha / len(challengers)
    rival = champion if not champion.reference else max(challengers, key=lambda a: a.mean(key))
    comparison = compare_arms(
        rival.accuracies("test_acc"), reference.accuracies("test_acc"),
        rival.correct, reference.correct, level,
    )  # fmt: skip
    stat = f"{comparison.text()}, alpha {level:.2g}"
    if champion.reference:
        promoted = reference
        summary = (
            f"the recipe (trial {reference.trial.number}) is the best finalist; best challenger "
            f"trial {rival.trial.number}: {stat}; champion: the recipe"
        )
    elif comparison.significant:
        promoted = champion
        summary = (
            f"trial {champion.trial.number} beats the recipe significantly: {stat}; champion: "
            f"trial {champion.trial.number}"
        )
    else:
        promoted = reference
        p = comparison.p_value
        summary = (
            f"no configuration beat the recipe significantly: {comparison.diff:+.2f} points, "
            f"p = {p:.2g} (trial {champion.trial.number}: {stat}); champion: the recipe "
            f"(trial {reference.trial.number})"
        )
    return RaceOutcome(arms, champion, promoted, comparison, selected_on, alpha, summary)


def _means(arm: Arm) -> str:
    test = arm.accuracies("test_acc")
    return f"mean test {100 * float(np.mean(test)):.2f} % over {len(test)} seeds" if test else "-"


def _run_arm(study, base, data, arm: Arm, epochs, seed, tracker, parent, holdout, say) -> None:
    role = "refit-reference" if arm.reference else "refit"
    say(f"race: trial {arm.trial.number}{' (recipe)' if arm.reference else ''}, seed {seed}, "
        f"{epochs:g} epochs")  # fmt: skip
    done = refit_run(
        study, base, data, arm.trial, epochs, tracker=tracker, parent_run_id=parent, role=role,
        seed=seed, log_model=False, holdout=holdout,
        tags={"cifar_hpo.phase": "finalist", "cifar_hpo.seed": str(seed)},
    )  # fmt: skip
    if done is None:
        say(f"race: trial {arm.trial.number} seed {seed} diverged")
        return
    refit, result = done
    arm.runs.append(refit)
    if arm.first_result is None:
        arm.first_result = result
        arm.correct = result.test.correct if result.test is not None else None
    test = f"{100 * refit.test_acc:.2f} %" if refit.test_acc is not None else "-"
    say(f"race: trial {arm.trial.number} seed {seed}: test {test} "
        f"({format_minutes(refit.seconds)})")  # fmt: skip


def _log_promoted(arm: Arm, data: CifarData, tracker) -> None:
    """Log the promoted arm's first-seed model on its (finished) run."""
    first = arm.runs[0]
    if first.run_id is None or arm.first_result is None:
        return
    run = TrialRun(tracker, first.run_id)
    first.model_id = run.log_model(arm.first_result, data.mean, data.std)


def _record(study: optuna.Study, outcome: RaceOutcome) -> None:
    promoted = outcome.promoted
    refit = {
        **promoted.runs[0].as_attr(),
        "promoted": True,
        "mean_test_acc": promoted.mean("test_acc"),
        "seeds": len(promoted.runs),
    }
    study.set_user_attr(REFIT_ATTR, refit)
    reference = next((a for a in outcome.arms if a.reference), None)
    if reference is not None:
        attr = refit if reference is promoted else reference.runs[0].as_attr()
        study.set_user_attr(REFERENCE_REFIT_ATTR, attr)
    study.set_user_attr(RACE_ATTR, outcome.record())


def refit_speed(plan: SweepPlan, best: optuna.trial.FrozenTrial | None) -> float:
    """Training images/s to plan the race with: the median the best trial's own epochs ran at
    in this search (same machine, same config but the data share), else the plan's probe of
    its architecture, else the probes' mean. The probe is a few steps, easily skewed by a busy
    CPU; the trial's epochs are the better measure."""
    observed = best.user_attrs.get(TRAIN_SPEED_ATTR) if best is not None else None
    if observed:
        return float(observed)
    speed = statistics.fmean(plan.images_per_sec.values())
    if best is not None and "model.name" in best.params:
        speed = plan.images_per_sec.get(best.params["model.name"], speed)
    return speed


def race_after_search(
    study: optuna.Study,
    spec: SweepSpec,
    base: TrainConfig,
    data: CifarData,
    plan: SweepPlan,
    clock: BudgetClock,
    *,
    tracker: Tracker | NullTracker,
    parent_run_id: str | None,
    train_images: int,
    val_images: int,
    say: Callable[[str], None],
) -> RaceOutcome | None:
    """The race in the time the search left: finalists x seeds x epochs planned again from
    the seconds left (``clock``) and the measured speeds (:func:`refit_speed`) of the best
    trial and of the reference recipe's trial (an architecture searched wider or narrower than
    the recipe's trains at another speed), up to the spec's ``refit`` and
    ``budget.refit_epochs`` (not capped by the plan made before trial 1 from a probe: a
    machine faster than probed leaves the race more time, which it uses), then :func:`race`."""
    best = best_trial(study)
    if best is None:
        say("no refit: no completed trial")
        return None
    speed = refit_speed(plan, best)
    passes = tta_passes(base.tta)
    epoch_s = epoch_seconds(train_images, speed, val_images, passes)
    test_s = test_pass_seconds(len(data.test_labels), speed, passes)
    ref_trial = reference_trial(study) if spec.budget.refit_reference else None
    reference_epoch_s = None
    if ref_trial is not None:
        ref_speed = refit_speed(plan, ref_trial)
        reference_epoch_s = epoch_seconds(train_images, ref_speed, val_images, passes)

    def time_left() -> float:
        return clock.left_s * 0.97 - end_reserve(clock.total_s)

    reference = ref_trial is not None
    race_plan = plan_finalists(
        time_left(),
        epoch_s,
        test_s,
        finalists=spec.refit.finalists,
        seeds=spec.refit.seeds,
        reference=reference,
        epochs=spec.budget.refit_epochs or spec.budget.epochs,
        min_epochs=spec.budget.refit_min_epochs,
        reference_epoch_s=reference_epoch_s,
    )
    if race_plan.epochs < 0.1:
        say("no refit: no time left")
        return None
    say(f"refit: {race_plan.line()}, {train_images:,} images each")
    return race(
        study,
        base,
        data,
        race_plan,
        tracker=tracker,
        parent_run_id=parent_run_id,
        holdout=spec.budget.refit_holdout,
        alpha=spec.refit.alpha,
        time_left=time_left,
        say=say,
    )


def race_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The race's statistics as flat parent-run metrics: ``vs_reference_diff_points``,
    ``vs_reference_mcnemar_p``, ``vs_reference_welch_p``, ``vs_reference_ci_low_points``,
    ``vs_reference_ci_high_points``, ``vs_reference_significant``, ``race_seeds``,
    ``race_finalists``, ``champion_is_reference``."""
    out = {
        "race_seeds": float(min((len(a["test_acc"]) for a in record["arms"]), default=0)),
        "race_finalists": float(sum(not a["reference"] for a in record["arms"])),
        "champion_is_reference": float(bool(record.get("promoted_reference"))),
    }
    comparison = record.get("comparison")
    if comparison:
        out["vs_reference_diff_points"] = comparison["diff"]
        out["vs_reference_significant"] = float(comparison["significant"])
        if comparison.get("mcnemar"):
            out["vs_reference_mcnemar_p"] = comparison["mcnemar"]["p_value"]
        if comparison.get("welch"):
            w = comparison["welch"]
            out["vs_reference_welch_p"] = w["p_value"]
            out["vs_reference_ci_low_points"] = w["low"]
            out["vs_reference_ci_high_points"] = w["high"]
    return out
