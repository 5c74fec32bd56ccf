"""The finalists' race of a budgeted study: how many finalists x seeds x epochs fit the time
kept for the refit, and what the refit keeps when the race needs less (the rest goes back to
the search). Used by :mod:`cifar_hpo.sweep.plan` before the search and by
:mod:`cifar_hpo.sweep.finalists` when the race starts (re-planned from the time left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cifar_hpo.sweep.budget import format_minutes

RACE_MARGIN = 1.25  # the refit keeps this times the race's planned seconds when it needs less,
#: plus this per run: its first epoch's warm-up, MLflow run, LoggedModel and registry calls
#: (seed001_cnn's 5-epoch race runs took 64-82 s where the probe's speed gave 43 s, on a 2-core
#: AMX Xeon; seed000_cnn's 25-epoch ones 4.7-5.6 min for 5.1 planned)
RACE_RUN_OVERHEAD_S = 30.0


@dataclass(frozen=True)
class FinalistPlan:
    """How many refits the race runs. Times in seconds.

    Attributes:
        finalists: configurations from the search.
        seeds: random seeds per arm (each finalist, and the reference).
        epochs: epochs of every run on the whole training split.
        reference: the reference recipe is raced beside them.
        run_s: expected seconds of one finalist's run (training and its test pass).
        notes: what was lowered to fit, one line each.
        reference_run_s: expected seconds of one reference run, when its architecture trains
            at another speed than the finalists' (None: ``run_s``).
    """

    finalists: int
    seeds: int
    epochs: float
    reference: bool
    run_s: float
    notes: tuple[str, ...] = ()
    reference_run_s: float | None = None

    def arm_run_s(self, reference: bool) -> float:
        """Expected seconds of one run of the reference arm or of a finalist's."""
        if reference and self.reference_run_s is not None:
            return self.reference_run_s
        return self.run_s

    @property
    def runs(self) -> int:
        """Runs at most (fewer when the reference is among the finalists)."""
        return (self.finalists + int(self.reference)) * self.seeds

    @property
    def seconds(self) -> float:
        reference_s = self.arm_run_s(True) if self.reference else 0.0
        return self.seeds * (self.finalists * self.run_s + reference_s)

    def line(self) -> str:
        """``finalists: 3 x 2 seeds x 25 epochs + the reference recipe x 2 seeds = 8 runs of
        ~10.4 min = ~83.2 min``; with the reference at its own speed ``finalists: 1 x 2 seeds
        x 10 epochs (~12.4 min a run) + the reference recipe x 2 seeds (~8.7 min a run) = 4
        runs = ~42.2 min``."""
        total = f"~{format_minutes(self.seconds)}"
        head = f"finalists: {self.finalists} x {self.seeds} seeds x {self.epochs:g} epochs"
        if not self.reference:
            return f"{head} = {self.runs} runs of ~{format_minutes(self.run_s)} = {total}"
        ref = f" + the reference recipe x {self.seeds} seeds"
        if self.reference_run_s is None:
            return f"{head}{ref} = {self.runs} runs of ~{format_minutes(self.run_s)} = {total}"
        return (
            f"{head} (~{format_minutes(self.run_s)} a run){ref} "
            f"(~{format_minutes(self.reference_run_s)} a run) = {self.runs} runs = {total}"
        )


def floor_epochs(epochs: float, min_epochs: float | None) -> float:
    """The fewest epochs a race runs while a smaller race fits: the refit's ``epochs``, or the
    recipe's own ``min_epochs`` when given and lower."""
    return min(epochs, min_epochs) if min_epochs else epochs


def plan_finalists(
    time_s: float,
    epoch_s: float,
    test_s: float,
    *,
    finalists: int,
    seeds: int,
    reference: bool,
    epochs: float,
    min_epochs: float | None = None,
    reference_epoch_s: float | None = None,
) -> FinalistPlan:
    """Fit finalists x seeds x epochs into ``time_s`` seconds, at ``epoch_s`` seconds per
    training epoch of a finalist (``reference_epoch_s`` of the reference recipe, when its
    architecture trains at another speed; None: the same) and ``test_s`` per test pass.

    The epochs stay at ``epochs`` (the refit fidelity), or at least ``min_epochs`` (the
    recipe's own) when given; finalists are lowered first, down to 1, then seeds, down to 1;
    only then the epochs, to what fits (0: no race). Seeds go last because Welch's interval
    and the significance gate need 2 or more per arm: a second finalist on one seed cannot be
    told apart from the first. What was lowered, or that no refit fits, is in the plan's
    ``notes``.
    """
    floor = floor_epochs(epochs, min_epochs)
    notes = []
    k, s = finalists, seeds
    arms = lambda k: k + int(reference)  # noqa: E731

    ref_epoch_s = epoch_s if reference_epoch_s is None else reference_epoch_s

    def fitting_epochs(k: int, s: int) -> float:
        # one seed of every arm: k finalists and the reference, each trained and tested
        epoch_of_a_seed = k * epoch_s + (ref_epoch_s if reference else 0.0)
        fit = (time_s / s - arms(k) * test_s) / epoch_of_a_seed if s else 0.0
        return min(float(epochs), math.floor(max(fit, 0.0) * 10) / 10)

    while fitting_epochs(k, s) < floor and (k > 1 or s > 1):
        if k > 1:
            k -= 1
        else:
            s -= 1
    chosen = fitting_epochs(k, s)
    if (k, s) != (finalists, seeds):
        notes.append(
            f"race lowered from {finalists} finalists x {seeds} seeds to {k} x {s} to fit "
            f"{format_minutes(time_s)}"
        )
    if chosen < epochs:
        notes.append(f"race epochs {chosen:g} of the wanted {epochs:g} (time kept)")
    if chosen <= 0:
        notes.append("no time for a refit: the best trial stays the champion")
    reference_run_s = None
    if reference and reference_epoch_s is not None and reference_epoch_s != epoch_s:
        reference_run_s = chosen * reference_epoch_s + test_s
    return FinalistPlan(
        k, s, chosen, reference, chosen * epoch_s + test_s, tuple(notes), reference_run_s
    )


def give_back_spare_refit(refit_s: float, race: FinalistPlan, notes: list[str]) -> float:
    """Seconds the refit keeps: all of ``refit_s``, unless the race at its full size (the
    spec's finalists x seeds x epochs) needs less; then ``RACE_MARGIN`` times what it needs
    plus ``RACE_RUN_OVERHEAD_S`` per run, and the rest goes to the search (said in ``notes``).
    The margin covers what the probe's speed does not see (each run's first-epoch warm-up,
    a finalist slower than the mean, tracking); the race is planned again from what is left."""
    kept_s = RACE_MARGIN * race.seconds + RACE_RUN_OVERHEAD_S * race.runs
    if race.epochs <= 0 or race.notes or kept_s >= refit_s:
        return refit_s
    notes.append(
        f"the race needs ~{format_minutes(race.seconds)} of the {format_minutes(refit_s)} "
        f"kept for it: the search gets the other {format_minutes(refit_s - kept_s)} "
        f"({RACE_MARGIN:g}x and {RACE_RUN_OVERHEAD_S:.0f} s per run stay with the race)"
    )
    return kept_s
