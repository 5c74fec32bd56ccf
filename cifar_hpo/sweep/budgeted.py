"""How one call of a sweep spends its time: with a budget, the plan fitted to this
machine's measured speed (:mod:`cifar_hpo.sweep.plan`), the trials' overrides and pruner from
it, the search's stop, and the finalists' race in the time left after the search; without
one, an estimate of the call's duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from cifar_hpo.engine import make_splits
from cifar_hpo.sweep.budget import BudgetClock, BudgetStop, budget_clock, format_minutes
from cifar_hpo.sweep.finalists import race_after_search
from cifar_hpo.sweep.plan import SweepPlan, plan_sweep
from cifar_hpo.sweep.probe import measure_speeds
from cifar_hpo.sweep.race_guard import RaceGuard
from cifar_hpo.sweep.refit import refit_config
from cifar_hpo.sweep.spec import SweepSpec, build_pruner
from cifar_hpo.sweep.study import PreparedSweep, base_config
from cifar_hpo.tta import tta_passes


@dataclass
class Search:
    """How this call searches (see :func:`plan_search`).

    Attributes:
        clock: the budget's clock; None without a budget.
        plan: the plan of the budget left; None without a budget or with one used up.
        overrides: dotted overrides of every trial (the call's, and the plan's fidelity).
        timeout: seconds the search may take (the plan's search time at most); None: no limit.
        callbacks: Optuna study callbacks that stop the search within the plan.
        refused: why a ``--budget`` given to this call runs nothing (raise it at the end).
    """

    clock: BudgetClock | None
    plan: SweepPlan | None
    overrides: dict[str, Any]
    timeout: float | None
    callbacks: list = field(default_factory=list)
    refused: str | None = None

    @property
    def runs(self) -> bool:
        """Whether trials may start: no budget, or some of it left."""
        return self.clock is None or not self.clock.used_up

    def total(self, n_trials: int | None) -> int | None:
        """Trials this call expects: ``n_trials``, at most the plan's (None: open ended)."""
        if self.plan is None:
            return n_trials
        return min(n_trials or self.plan.expected_trials, self.plan.expected_trials)


def plan_search(
    prep: PreparedSweep,
    n_trials: int | None,
    timeout: float | None,
    budget_s: float | None,
    started: float,
    overrides: dict[str, Any] | None,
    say: Callable[[str], None],
) -> Search:
    """Measure the architectures' speeds, then plan this call: with a budget (``budget_s``
    seconds, or the spec's ``budget.minutes``, or the one the study recorded) counted from
    ``started`` (``time.monotonic()``), the plan of the budget left and what it sets (the
    trials' training share and epochs, the pruner's rungs, the search's end); without one, the
    call's expected duration is said. The plan, or why nothing runs, is said too.
    """
    study_name = prep.study.study_name
    given_budget_s = budget_s
    if budget_s is None and prep.spec.budget.minutes:
        budget_s = prep.spec.budget.minutes * 60
    clock = budget_clock(prep.study, budget_s, started)
    speeds = measure_speeds(prep, overrides, say)
    refused = None
    if clock is not None and clock.used_up:
        refused = used_up_text(prep, speeds, clock, given_budget_s, overrides)
        if given_budget_s is None:  # a resumed study's own budget: nothing to do, not an error
            say(f"study {study_name}: {refused}")
            refused = None
    plan = None
    trial_overrides = dict(overrides or {})
    callbacks: list = []
    if clock is not None and not clock.used_up:
        plan = plan_study(prep, speeds, clock.left_s, overrides)
        for line in plan.lines():
            say(line)
        trial_overrides["data.train_fraction"] = plan.train_fraction
        if plan.epochs < base_config(prep, overrides).epochs:  # lowered to fit the budget
            trial_overrides["epochs"] = plan.epochs
        prep.study.pruner = planned_pruner(prep.spec, plan)
        search_end = clock.used_s + plan.search_s
        timeout = min(timeout or math.inf, max(1.0, plan.search_s))
        callbacks.append(BudgetStop(clock, search_end, plan.trial_s))
        callbacks.append(race_guard(prep, plan, clock, overrides, say))
    elif clock is None:
        say(estimate_text(prep, speeds, n_trials, timeout, overrides))
    return Search(clock, plan, trial_overrides, timeout, callbacks, refused)


def race_guard(prep: PreparedSweep, plan: SweepPlan, clock: BudgetClock, overrides, say):
    """The callback that ends the search while the race's floor still fits
    (:class:`~cifar_hpo.sweep.race_guard.RaceGuard`), sized as :func:`run_refit` races."""
    race_images, val_images = split_sizes(prep, overrides, prep.spec.budget.refit_holdout)
    return RaceGuard(
        clock,
        prep.spec,
        plan,
        race_images=race_images,
        val_images=val_images,
        test_images=len(prep.data.test_labels),
        tta_passes=tta_passes(base_config(prep, overrides).tta),
        trial_s=plan.trial_s,
        say=say,
    )


def split_sizes(prep: PreparedSweep, overrides, holdout: bool = True) -> tuple[int, int]:
    """(images of the whole training split, validation images), as a refit splits them
    (``holdout=False``: the hold-out trains too, no validation images)."""
    full = refit_config(base_config(prep, overrides), {}, 1.0, holdout=holdout)
    splits = make_splits(full, prep.data)
    return len(splits.train_idx), len(splits.val_idx)


def plan_study(prep: PreparedSweep, speeds, budget_s: float, overrides) -> SweepPlan:
    """The plan of this budgeted call (see :func:`cifar_hpo.sweep.plan.plan_sweep`)."""
    spec, base = prep.spec, base_config(prep, overrides)
    train_images, val_images = split_sizes(prep, overrides)
    return plan_sweep(
        budget_s,
        images_per_sec=speeds,
        epochs=max(1, math.ceil(base.epochs)),
        train_images=train_images,
        train_fraction=base.data.train_fraction,
        val_images=val_images,
        tta_passes=tta_passes(base.tta),
        pruner=spec.pruner.name,
        min_resource=spec.pruner.min_resource,
        reduction_factor=spec.pruner.reduction_factor,
        refit_epochs=spec.budget.refit_epochs or spec.budget.epochs,
        refit_share=spec.budget.refit_share,
        refit_runs=2 if spec.budget.refit_reference and spec.enqueue else 1,
        refit_holdout=spec.budget.refit_holdout,
        refit_min_epochs=spec.budget.refit_min_epochs,
        finalists=spec.refit.finalists,
        seeds=spec.refit.seeds,
        test_images=len(prep.data.test_labels),
        fidelity=spec.budget.fidelity,
        search_test=spec.budget.search_test,
    )


def planned_pruner(spec: SweepSpec, plan: SweepPlan) -> optuna.pruners.BasePruner:
    """The spec's pruner with the plan's rungs (min resource, reduction factor, max epochs);
    none for ``complete`` search fidelity (trials are ranked where their schedules end)."""
    if spec.budget.fidelity == "complete":
        return optuna.pruners.NopPruner()
    pruner = spec.pruner.model_copy(
        update={"min_resource": plan.rungs[0], "reduction_factor": plan.reduction_factor}
    )
    budget = spec.budget.model_copy(update={"epochs": plan.epochs})
    return build_pruner(spec.model_copy(update={"pruner": pruner, "budget": budget}))


def used_up_text(prep: PreparedSweep, speeds, clock: BudgetClock, given_s, overrides) -> str:
    """Why a budgeted call runs nothing: the budget is used up, and how much one trial needs
    on this machine (from the plan's cost model at the measured speeds)."""
    one = plan_study(prep, speeds, 3600.0, overrides).trial_s
    need = format_minutes(clock.used_s + max(one, 0.05 * clock.total_s) / 0.95 + 1)
    if given_s is None:
        return f"its budget is used up ({clock.text()}); give --budget {need} or more to extend"
    return (
        f"--budget {format_minutes(given_s)}: {format_minutes(clock.used_s)} of it are used "
        f"already, nothing is left for a trial (one needs ~{format_minutes(one)} on this "
        f"machine); give --budget {need} or more"
    )


def estimate_text(prep: PreparedSweep, speeds, n_trials, timeout, overrides) -> str:
    """Before trial 1 of a sweep without a budget: its expected duration on this machine."""
    plan = plan_study(prep, speeds, 3600.0, overrides)  # only the per-trial costs are used
    if n_trials is None:
        return f"estimate: ~{format_minutes(plan.trial_s)} a trial on this machine"
    total = format_minutes(n_trials * plan.trial_s)
    bound = f", stopping after {format_minutes(timeout)}" if timeout else ""
    return (
        f"estimate: {n_trials} trials x ~{format_minutes(plan.trial_s)} = ~{total} on this "
        f"machine{bound} (--budget 30m, say, fits the study to your time instead)"
    )


def run_refit(prep: PreparedSweep, plan: SweepPlan, clock: BudgetClock, overrides, say) -> None:
    """After the search: race the finalists and the reference recipe in the time the budget
    left, and promote the champion (:func:`cifar_hpo.sweep.finalists.race_after_search`)."""
    holdout = prep.spec.budget.refit_holdout
    train_images, val_images = split_sizes(prep, overrides, holdout)
    race_after_search(
        prep.study,
        prep.spec,
        base_config(prep, overrides),
        prep.data,
        plan,
        clock,
        tracker=prep.tracker,
        parent_run_id=prep.parent_run_id,
        train_images=train_images,
        val_images=val_images,
        say=say,
    )
