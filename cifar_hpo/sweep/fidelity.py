"""Search fidelity: how a study's low-fidelity decisions are taken, and whether they hold.

Two ways a study can decide at low fidelity (spec ``search.fidelity``):

* ``mid-schedule``: every trial's LR schedule spans the whole search fidelity and the pruner
  (successive halving, hyperband, median) compares trials at epochs inside it. Cheap, but it
  suffers *short-horizon bias*: at a rung in the middle of a schedule, configurations that start
  fast lead and OneCycle / linear-decay ones are still warming up.
* ``complete`` (default for new studies): every trial trains a *complete*, short schedule (its
  decay included) and is ranked only on where it ends; no mid-schedule pruning (a non-finite
  loss still ends a trial at once). The top-k configurations are then promoted to full
  fidelity and raced on seeds (:mod:`cifar_hpo.sweep.finalists`). This is the "few complete
  short trials, then top-k" scheme of Egele et al., "Is One Epoch All You Need For Multi-Fidelity
  Hyperparameter Optimization?" (arXiv 2307.15422).

:func:`rank_agreement` measures how well a decision point ranks like full training
(``bench/fidelity.py`` runs it on a fixed panel of configurations, :func:`panel`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from scipy import stats as scipy_stats

from cifar_hpo.sweep.spec import SweepSpec, build_sampler, suggest

MID_SCHEDULE = "mid-schedule"
COMPLETE = "complete"
FIDELITIES = (MID_SCHEDULE, COMPLETE)


@dataclass(frozen=True)
class RankAgreement:
    """How a low-fidelity score ranks configurations against their full-fidelity score.

    Attributes:
        rho: Spearman's rank correlation between the two scores (nan for fewer than 3).
        regret: full-fidelity points (percentage points of accuracy) lost by keeping the
            low-fidelity winner instead of the full-fidelity best (0 when they agree).
        kept: index of the low-fidelity winner in the panel.
        best: index of the full-fidelity winner.
    """

    rho: float
    regret: float
    kept: int
    best: int


def rank_agreement(
    low: Sequence[float], full: Sequence[float], maximize: bool = True
) -> RankAgreement:
    """Spearman's rho and the top-1 regret of ``low`` (one score per configuration, e.g.
    validation accuracy at a decision point) against ``full`` (the same configurations'
    full-fidelity scores, fractions). A non-finite low score ranks last.

    Raises:
        ValueError: the two lists differ in length or are empty.
    """
    if len(low) != len(full) or not low:
        raise ValueError(
            f"need two equally long, non-empty score lists, got {len(low)} and {len(full)}"
        )
    worst = -math.inf if maximize else math.inf
    clean = [v if math.isfinite(v) else worst for v in low]
    sign = 1.0 if maximize else -1.0
    kept = max(range(len(clean)), key=lambda i: (sign * clean[i], -i))
    best = max(range(len(full)), key=lambda i: (sign * full[i], -i))
    regret = 100.0 * sign * (full[best] - full[kept])
    rho = float("nan")
    if len(low) >= 3:
        rho = float(scipy_stats.spearmanr(clean, full).statistic)
    return RankAgreement(rho=rho, regret=regret, kept=kept, best=best)


def panel(spec: SweepSpec, size: int, extra: Sequence[dict[str, Any]] = (), seed: int = 0):
    """A fixed panel of ``size`` configurations (dotted parameter dicts) for a study: its
    reference recipe (first ``enqueue`` entry), then ``extra`` (hand-picked ones), then
    configurations drawn by the study's own sampler with a fixed ``seed`` (the same panel
    every run).

    Raises:
        ValueError: ``size`` < 1.
    """
    if size < 1:
        raise ValueError(f"panel size {size}: expected >= 1")
    configs: list[dict[str, Any]] = [dict(spec.enqueue[0])] if spec.enqueue else []
    configs += [dict(e) for e in extra]
    sampler_spec = spec.sampler.model_copy(update={"seed": seed})
    sampler = build_sampler(spec.model_copy(update={"sampler": sampler_spec}))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    while len(configs) < size:
        trial = study.ask()
        configs.append(suggest(trial, spec))
        study.tell(trial, 0.0)
    return configs[:size]
