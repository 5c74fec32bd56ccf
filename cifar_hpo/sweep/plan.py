"""The plan of a budgeted study, fitted to this machine's measured training speed.

Inputs: the budget (seconds), the spec (search epochs, training share, pruner), the training
images/s of each architecture in the search space on this machine
(:class:`cifar_hpo.throughput.ThroughputCache`) and the split sizes. Output: a
:class:`SweepPlan`: how the budget splits into search and refit, the multi-fidelity ladder in
epochs of the (possibly reduced) training share, the successive-halving rungs Optuna's pruner
uses, the expected number of trials, and the refit's epochs on the whole training split.

Cost model (seconds): a training epoch is ``images / images_per_sec``; a validation pass scores
the hold-out ``tta_passes`` times at ``EVAL_SPEEDUP`` x the training speed (forward only); each
trial adds ``TRIAL_OVERHEAD_S`` of tracking and the end of the study keeps ``END_RESERVE_S``
(at most 10 % of the budget) for the refit's model logging and the study summary. Under
successive halving with minimum resource ``r0`` and reduction factor ``eta`` a trial reaches rung
``k`` (``r0 * eta**k`` epochs) with probability ``eta**-k``, so its expected epochs are
``sum_k eta**-k * (r_k - r_(k-1))`` up to the search epochs; other pruners are costed as
unpruned (an upper bound).

Fidelity fitting: when fewer than ``MIN_TRIALS`` trial-equivalents fit in the search time, the
cheapest loss of information goes first:

1. the training share per epoch is lowered, but only while an epoch's training still costs at
   least ``MIN_TRAIN_TO_VAL`` x its validation pass (the hold-out is scored whole, with TTA,
   every epoch: below that point a trial mostly validates and its ranking is noise);
2. then the search epochs are lowered, down to half the spec's (``MIN_EPOCH_SHARE``; every
   trial's LR schedule spans the epochs it is planned to reach, and the rungs follow);
3. only then the share goes lower, down to ``MIN_TRAIN_FRACTION``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from cifar_hpo.sweep.budget import format_minutes
from cifar_hpo.sweep.race_plan import FinalistPlan, give_back_spare_refit, plan_finalists

EVAL_SPEEDUP = 3.0  # forward-only images/s relative to training images/s
MIN_TRIALS = 8  # trial-equivalents the search should hold before fidelity is reduced
MIN_TRAIN_FRACTION = 0.05
MIN_TRAIN_TO_VAL = 2.0  # an epoch's training seconds per validation second, before epochs go
MIN_EPOCH_SHARE = 0.5  # search epochs may be lowered to this share of the spec's
DEFAULT_REFIT_SHARE = 0.25
MAX_REFIT_SHARE = 0.6  # the most of the budget a refit's minimum epochs may take from the search
#: seconds per trial outside training (MLflow run, plots, Optuna storage; a top-k model logged)
TRIAL_OVERHEAD_S = 2.0
#: seconds kept at the end: the refit's model logging and the study summary and plots
END_RESERVE_S = 12.0


@dataclass
class SweepPlan:
    """A budgeted study's plan. Times in seconds, fidelities in epochs.

    Attributes:
        budget_s: the whole budget left for this call.
        search_s: seconds for the search (trials).
        refit_s: seconds kept for the refit of the best configuration.
        images_per_sec: training images/s per architecture on this machine.
        train_fraction: share of the training split per search epoch (may be reduced).
        images_per_epoch: training images per search epoch.
        epochs: search fidelity (the pruner's max resource; every trial's schedule spans it).
        rungs: successive-halving rungs in epochs (min resource first).
        reduction_factor: the pruner's eta.
        trial_s: expected seconds of one trial (pruning included), mean over architectures.
        full_trial_s: seconds of one unpruned trial (the longest a trial can take), slowest
            architecture.
        expected_trials: search trials expected to fit.
        refit_epochs: epochs of the refit on the whole training split.
        refit_runs: refits planned with those epochs (2 with the reference recipe's).
        refit_holdout: the refit keeps the validation hold-out out of its training.
        race: finalists x seeds x epochs of the race after the search.
        notes: fitting decisions, one line each.
    """

    budget_s: float
    search_s: float
    refit_s: float
    images_per_sec: dict[str, float]
    train_fraction: float
    images_per_epoch: int
    epochs: int
    rungs: list[int]
    reduction_factor: int
    trial_s: float
    full_trial_s: float
    expected_trials: int
    refit_epochs: float
    notes: list[str] = field(default_factory=list)
    refit_runs: int = 1
    refit_holdout: bool = True
    race: FinalistPlan | None = None
    fidelity: str = "mid-schedule"

    def lines(self) -> list[str]:
        """The plan as printed before trial 1."""
        speeds = ", ".join(f"{k} {v:,.0f}" for k, v in self.images_per_sec.items())
        out = [
            f"plan: budget {format_minutes(self.budget_s)} = search "
            f"{format_minutes(self.search_s)} + refit {format_minutes(self.refit_s)}",
            f"  measured training images/s on this machine: {speeds}",
            f"  search fidelity: {self.epochs} epochs of {self.images_per_epoch:,} images "
            f"(data.train_fraction {self.train_fraction:.3g}); "
            + (
                "complete schedules, ranked where they end (no mid-schedule pruning)"
                if self.fidelity == "complete"
                else f"pruning rungs at epochs {', '.join(map(str, self.rungs))} (reduction "
                f"factor {self.reduction_factor})"
            ),
            f"  expected: ~{self.expected_trials} trials of ~{format_minutes(self.trial_s)} "
            f"(an unpruned one up to {format_minutes(self.full_trial_s)}); refit: "
            f"{self.refit_epochs:g} epochs on the whole training split"
            + (" (validation held out)" if self.refit_holdout else " (hold-out included)")
            + (
                ", then the reference recipe with the same epochs"
                if self.race is not None and self.race.reference
                else ""
            ),
        ]
        if self.race is not None:
            out.append(f"  {self.race.line()}")
        return out + [f"  note: {n}" for n in self.notes]


def end_reserve(budget_s: float) -> float:
    """Seconds kept at the end of a study of ``budget_s`` seconds (see ``END_RESERVE_S``)."""
    return min(END_RESERVE_S, 0.1 * budget_s)


def successive_halving_rungs(min_resource: int, eta: int, max_resource: int) -> list[int]:
    """Rungs ``min_resource * eta**k`` below ``max_resource`` (always the first one)."""
    rungs, r = [], max(1, min_resource)
    while r < max_resource or not rungs:
        rungs.append(min(r, max_resource))
        r *= eta
    return rungs


def expected_epochs(rungs: list[int], eta: int, epochs: int, pruned: bool) -> float:
    """Expected training epochs of one trial (see the module docstring)."""
    if not pruned:
        return float(epochs)
    total, previous = 0.0, 0
    for k, rung in enumerate([*rungs, epochs]):
        total += eta ** -min(k, len(rungs)) * (rung - previous) if k else rung
        previous = rung
    return total


def test_pass_seconds(test_images: int, images_per_sec: float, tta_passes: int) -> float:
    """One scoring of ``test_images`` with ``tta_passes`` forward passes each (seconds)."""
    return test_images * tta_passes / (images_per_sec * EVAL_SPEEDUP)


def epoch_seconds(images: int, images_per_sec: float, val_images: int, tta_passes: int) -> float:
    """One epoch: training plus one validation pass."""
    train = images / images_per_sec
    val = val_images * tta_passes / (images_per_sec * EVAL_SPEEDUP)
    return train + val


def fitting_fraction(costs, fraction: float, epochs: int, trial_s: float) -> float:
    """The training share at which a trial of ``epochs`` costs ``trial_s`` seconds (a trial's
    cost is linear in the share: validation and overhead do not shrink); at most ``fraction``,
    0 when even validation alone costs more."""
    fixed = costs(0.0, epochs)[1]
    per_fraction = (costs(fraction, epochs)[1] - fixed) / fraction
    return min(fraction, max(0.0, (trial_s - fixed) / per_fraction))


@dataclass(frozen=True)
class TrialCosts:
    """The cost model of one search trial (see the module docstring): speeds in training
    images/s (``mean_speed`` over architectures, ``slowest`` of them), ``eta`` the pruner's
    reduction factor, ``pruned`` whether successive-halving rungs cut trials short."""

    train_images: int
    val_images: int
    tta_passes: int
    mean_speed: float
    slowest: float
    min_resource: int
    eta: int
    pruned: bool
    test_images: int = 0  # scored after each completed trial (budget.search_test)

    def rungs(self, epochs: int) -> list[int]:
        """The pruner's rungs for a search of ``epochs`` (``[epochs]`` unpruned)."""
        if not self.pruned:
            return [epochs]
        return successive_halving_rungs(self.min_resource, self.eta, epochs)

    def __call__(self, fraction: float, epochs: int) -> tuple[int, float, float]:
        """(images per epoch, expected seconds of a trial, seconds of an unpruned one)."""
        images = int(self.train_images * fraction)
        one = epoch_seconds(images, self.mean_speed, self.val_images, self.tta_passes)
        worst = epoch_seconds(images, self.slowest, self.val_images, self.tta_passes)
        expected = expected_epochs(self.rungs(epochs), self.eta, epochs, self.pruned)
        test = test_pass_seconds(self.test_images, self.mean_speed, self.tta_passes)
        trial = expected * one + TRIAL_OVERHEAD_S + test
        return images, trial, epochs * worst + TRIAL_OVERHEAD_S + test


def fit_fidelity(
    costs: TrialCosts, train_fraction: float, epochs: int, wanted_trial_s: float, notes: list[str]
) -> tuple[float, int]:
    """(training share, search epochs) at which a trial costs about ``wanted_trial_s`` seconds,
    lowered in the order of the module docstring from the spec's ``train_fraction`` and
    ``epochs``; what was lowered goes to ``notes``."""
    fraction, spec_epochs = train_fraction, epochs
    if costs(fraction, epochs)[1] <= wanted_trial_s:
        return fraction, epochs
    # 1. the share, while training still outweighs validation MIN_TRAIN_TO_VAL times
    val_s = epoch_seconds(0, costs.mean_speed, costs.val_images, costs.tta_passes)
    floor = max(
        MIN_TRAIN_FRACTION, MIN_TRAIN_TO_VAL * val_s * costs.mean_speed / costs.train_images
    )
    fraction = max(min(fraction, floor), fitting_fraction(costs, fraction, epochs, wanted_trial_s))
    # 2. the epochs, down to MIN_EPOCH_SHARE of the spec's
    lowest = max(1, math.ceil(MIN_EPOCH_SHARE * epochs))
    while epochs > lowest and costs(fraction, epochs)[1] > wanted_trial_s:
        epochs -= 1
    # 3. the share again, down to MIN_TRAIN_FRACTION
    if costs(fraction, epochs)[1] > wanted_trial_s:
        fraction = max(
            MIN_TRAIN_FRACTION, fitting_fraction(costs, fraction, epochs, wanted_trial_s)
        )
    if fraction < train_fraction:
        notes.append(
            f"data.train_fraction lowered from {train_fraction:.3g} to {fraction:.3g} so "
            f"that ~{MIN_TRIALS} trials fit in the search time"
        )
    if epochs < spec_epochs:
        notes.append(
            f"search epochs lowered from {spec_epochs} to {epochs} so that more trials fit "
            "without a training share too small for its validation pass"
        )
    return fraction, epochs


def refit_seconds(
    usable_s: float,
    share: float,
    min_epochs: float | None,
    min_run_s: float,
    runs: int,
    notes: list[str],
) -> float:
    """Seconds kept for the race: ``share`` of the ``usable_s`` budget, raised (up to
    ``MAX_REFIT_SHARE``) until ``runs`` runs of ``min_run_s`` seconds (one finalist and the
    reference at ``min_epochs``, their test pass included) fit; the raise goes to ``notes``."""
    refit_s = usable_s * share
    needed_s = 1.01 * min_run_s * runs
    if not min_epochs or needed_s <= refit_s:
        return refit_s
    capped_s = usable_s * MAX_REFIT_SHARE
    if refit_s < capped_s:
        notes.append(
            f"refit share raised from {share:.0%} to {min(needed_s, capped_s) / usable_s:.0%} "
            f"so that the refit gets its minimum {min_epochs:g} epochs"
        )
    if needed_s > capped_s:
        # the search keeps its share: a budget this small cannot hold the minimum here
        notes.append(
            f"the refit's minimum {min_epochs:g} epochs need {needed_s / 60:.1f} min here "
            f"({runs} runs), more than {MAX_REFIT_SHARE:.0%} of the budget: "
            f"a budget of ~{math.ceil(needed_s / MAX_REFIT_SHARE / 60)} min would hold them"
        )
    return max(refit_s, min(needed_s, capped_s))


def plan_sweep(
    budget_s: float,
    *,
    images_per_sec: dict[str, float],
    epochs: int,
    train_images: int,
    train_fraction: float,
    val_images: int,
    tta_passes: int,
    pruner: str,
    min_resource: int,
    reduction_factor: int,
    refit_epochs: float,
    refit_share: float = DEFAULT_REFIT_SHARE,
    refit_runs: int = 1,
    refit_holdout: bool = True,
    refit_min_epochs: float | None = None,
    finalists: int = 1,
    seeds: int = 1,
    test_images: int = 10_000,
    fidelity: str = "mid-schedule",
    search_test: bool = False,
) -> SweepPlan:
    """Plan a study of ``budget_s`` seconds on this machine.

    Args:
        images_per_sec: training images/s per architecture (measured).
        epochs: the spec's search epochs (the pruner's max resource).
        train_images: images of the whole training split (validation held out).
        train_fraction: the spec's share of it per search epoch (the plan may lower it).
        val_images: validation images scored each epoch; ``tta_passes`` forward passes each.
        pruner: the spec's pruner name; ``successive_halving``/``hyperband`` get rungs.
        refit_epochs: the refit's wanted epochs on the whole training split (capped by time).
        refit_share: share of the budget kept for the refit (less when the race at its full
            size needs less: :func:`cifar_hpo.sweep.race_plan.give_back_spare_refit`).
        refit_runs: 2: the reference recipe is raced beside the finalists (1: not).
        refit_holdout: the refit keeps the validation images out of training and scores them
            each epoch; False: it trains on ``train_images + val_images`` without validation.
        refit_min_epochs: epochs the refit must get (the reference recipe's own, so that the
            champion never trains less than the recipe it has to beat): the refit share is
            raised until they fit, up to ``MAX_REFIT_SHARE`` of the budget; the search gets the
            rest.
        search_test: each completed search trial also scores the ``test_images`` (its test
            pass counts in the trial's cost).

    Raises:
        ValueError: no architecture speed, or a budget <= 0.
    """
    if not images_per_sec or budget_s <= 0:
        raise ValueError("a plan needs a budget > 0 and at least one measured speed")
    notes: list[str] = []
    reserve_s = end_reserve(budget_s)
    mean_speed = statistics.fmean(images_per_sec.values())
    slowest = min(images_per_sec.values())
    full_epoch_s = (
        epoch_seconds(train_images, mean_speed, val_images, tta_passes)
        if refit_holdout
        else epoch_seconds(train_images + val_images, mean_speed, 0, tta_passes)
    )
    test_s = test_pass_seconds(test_images, mean_speed, tta_passes)  # once per refit run
    one_run_s = full_epoch_s * (refit_min_epochs or 0) + test_s
    refit_s = refit_seconds(budget_s - reserve_s, refit_share, refit_min_epochs, one_run_s,
                            max(1, refit_runs), notes)  # fmt: skip
    race = plan_finalists(refit_s, full_epoch_s, test_s, finalists=finalists, seeds=seeds,
                          reference=refit_runs > 1, epochs=refit_epochs,
                          min_epochs=refit_min_epochs)  # fmt: skip
    notes += race.notes
    refit_s = give_back_spare_refit(refit_s, race, notes)
    search_s = budget_s - reserve_s - refit_s
    pruned = pruner in ("successive_halving", "hyperband") and fidelity != "complete"
    costs = TrialCosts(
        train_images, val_images, tta_passes, mean_speed, slowest, min_resource,
        reduction_factor, pruned, test_images if search_test else 0,
    )  # fmt: skip
    fraction, epochs = fit_fidelity(costs, train_fraction, epochs, search_s / MIN_TRIALS, notes)
    images, trial_s, full_s = costs(fraction, epochs)
    expected = max(0, int(search_s // trial_s))
    if expected < 2:
        notes.append("fewer than 2 trials fit: give a larger budget for a real search")
    return SweepPlan(
        budget_s=budget_s,
        search_s=search_s,
        refit_s=refit_s,
        images_per_sec=dict(images_per_sec),
        train_fraction=fraction,
        images_per_epoch=images,
        epochs=epochs,
        rungs=costs.rungs(epochs),
        reduction_factor=reduction_factor,
        trial_s=trial_s,
        full_trial_s=full_s,
        expected_trials=expected,
        refit_epochs=max(race.epochs, 0.0),
        notes=notes,
        refit_runs=race.runs,
        refit_holdout=refit_holdout,
        race=race,
        fidelity=fidelity,
    )
