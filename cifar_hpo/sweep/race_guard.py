"""Stop a budgeted search in time for the race the spec asks for.

The plan made before trial 1 sizes the race from a probe of a few training steps at one batch
size; a race run trains the best trial's configuration (its batch size, width, augmentation)
and the reference recipe's, whose epochs the search has measured. When those speeds are
slower than the probe's, the race planned after the search lowers its seeds, and one seed per
arm gives neither Welch's interval nor a usable significance gate (``seed000`` for 60 minutes
on a 2-core AVX512-BF16 EPYC: from the probe, 3 seeds per arm of 5.5-minute runs were planned;
the trials' measured speeds made them 8.6 minutes for the best trial and 6.9 for the recipe,
and 2 seeds per arm were raced).

:class:`RaceGuard` checks after every trial: when the race's floor (one finalist and the
reference, each on the spec's ``refit.seeds`` seeds, at the race's minimum epochs, at the
trials' measured speeds) fits in the time left now but would not after one more trial (as long
as the plan's estimate or the last trial, whichever is longer), the search stops. It never
stops before ``MIN_TRIALS`` complete trials, nor when the floor does not fit even now (the race
then lowers seeds, as planned).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from cifar_hpo.sweep.budget import BudgetClock, format_minutes
from cifar_hpo.sweep.finalists import refit_speed
from cifar_hpo.sweep.plan import (
    MIN_TRIALS,
    SweepPlan,
    end_reserve,
    epoch_seconds,
    test_pass_seconds,
)
from cifar_hpo.sweep.race_plan import RACE_RUN_OVERHEAD_S, floor_epochs
from cifar_hpo.sweep.ranking import best_trial
from cifar_hpo.sweep.refit import reference_trial
from cifar_hpo.sweep.spec import SweepSpec


class RaceGuard:
    """Optuna study callback that ends the search while the race's floor still fits.

    Args:
        clock: the budget's clock.
        spec: the study's spec (``refit.seeds``, ``budget.refit_epochs`` and
            ``refit_min_epochs``, ``refit_reference``).
        plan: the plan (its probed speeds stand in until a trial has measured its own).
        race_images: training images of one race epoch (the whole split, as the race trains).
        val_images: validation images a race epoch scores (0 when the hold-out trains too).
        test_images: images of the test pass every race run ends with.
        tta_passes: forward passes per scored image.
        trial_s: seconds one more search trial is expected to take.
        say: where the reason for stopping goes.
        min_trials: complete trials the search always gets.
    """

    def __init__(
        self,
        clock: BudgetClock,
        spec: SweepSpec,
        plan: SweepPlan,
        *,
        race_images: int,
        val_images: int,
        test_images: int,
        tta_passes: int,
        trial_s: float,
        say: Callable[[str], None] = print,
        min_trials: int = MIN_TRIALS,
    ):
        self.clock, self.spec, self.plan = clock, spec, plan
        self.race_images, self.val_images = race_images, val_images
        self.test_images, self.passes = test_images, tta_passes
        self.trial_s, self.say, self.min_trials = trial_s, say, min_trials

    @property
    def races_reference(self) -> bool:
        """Whether the race has a reference arm (the spec asks for it and enqueues a recipe)."""
        return bool(self.spec.budget.refit_reference and self.spec.enqueue)

    @property
    def floor_epochs(self) -> float:
        """The race's minimum epochs (as :func:`~cifar_hpo.sweep.race_plan.plan_finalists`)."""
        budget = self.spec.budget
        return floor_epochs(budget.refit_epochs or budget.epochs, budget.refit_min_epochs)

    def run_seconds(self, trial: optuna.trial.FrozenTrial) -> float:
        """Seconds of one race run of ``trial``'s configuration at its measured speed: the
        floor's epochs, the test pass and the per-run overhead."""
        speed = refit_speed(self.plan, trial)
        epoch_s = epoch_seconds(self.race_images, speed, self.val_images, self.passes)
        test_s = test_pass_seconds(self.test_images, speed, self.passes)
        return self.floor_epochs * epoch_s + test_s + RACE_RUN_OVERHEAD_S

    def floor_seconds(self, study: optuna.Study) -> float | None:
        """Seconds of the race's floor, or None before a trial completes. With the reference
        raced, two arms always (when the reference leads, a challenger still needs its runs,
        counted at the reference's speed)."""
        best = best_trial(study)
        if best is None:
            return None
        arms = [best]
        if self.races_reference:
            arms.append(reference_trial(study) or best)
        return self.spec.refit.seeds * sum(self.run_seconds(t) for t in arms)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < self.min_trials:
            return
        need = self.floor_seconds(study)
        if need is None:
            return
        left = self.clock.left_s * 0.97 - end_reserve(self.clock.total_s)
        # the next trial costs what this one took when the plan's estimate is lower
        took = trial.duration.total_seconds() if trial.duration else 0.0
        if need <= left < need + max(self.trial_s, took):
            arms = "1 finalist + the reference" if self.races_reference else "1 finalist"
            self.say(
                f"search stopped at {format_minutes(self.clock.used_s)}: the race of {arms} "
                f"x {self.spec.refit.seeds} seeds x {self.floor_epochs:g} epochs needs "
                f"~{format_minutes(need)} at the trials' measured speeds, "
                f"{format_minutes(left)} are left"
            )
            study.stop()
