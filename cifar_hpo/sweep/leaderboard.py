"""A study's leaderboard: its trials ranked by an objective or a trial user attribute, for
``cifar-hpo studies --study S --top N``.

Single- and multi-objective studies alike. Each objective is named by the study's metric names
(``study.set_metric_names``), else ``value`` (one objective) or ``value_0``, ``value_1``, ...
(several), and ranked in its own direction (``study.directions``). The ranking follows Optuna's
idea of "best": first the candidates its best trial is chosen from (COMPLETE and feasible, that
is every constraint value <= 0), then the other trials that have a value for the key (pruned
ones at their last reported value, infeasible ones), then the trials without one (running,
failed); ties go to the earlier trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from cifar_hpo.errors import UserError
from cifar_hpo.record import EPOCHS_RUN_ATTR
from cifar_hpo.sweep.ranking import is_feasible, objective_names
from cifar_hpo.sweep.storage import RUN_ID_ATTR


@dataclass(frozen=True)
class Objective:
    """One of a study's objectives: its column name and whether larger is better."""

    name: str
    maximize: bool


@dataclass(frozen=True)
class Entry:
    """One row of the leaderboard.

    Attributes:
        rank: 1-based place in the whole ranking.
        trial: the trial itself (params, user attributes, state).
        values: objective name -> value (None while the trial has none).
        key: the value ranked by (None: ranked last).
        feasible: False when a constraint value is > 0 (``trial.set_constraint``).
        pareto: on the Pareto front (``study.best_trials``; multi-objective studies only).
    """

    rank: int
    trial: FrozenTrial
    values: dict[str, float | None]
    key: float | None
    feasible: bool
    pareto: bool

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def epochs_run(self) -> float | None:
        return _number(self.trial.user_attrs.get(EPOCHS_RUN_ATTR))

    @property
    def run_id(self) -> str | None:
        return self.trial.user_attrs.get(RUN_ID_ATTR)


@dataclass(frozen=True)
class Leaderboard:
    """The top of a study's ranking and how it was made.

    Attributes:
        study: the study's name.
        objectives: the study's objectives, in order.
        sort_key: the objective or user attribute ranked by.
        descending: larger values first.
        param_names: the parameters to show, in the order trials first suggested them.
        entries: the first ``top`` trials of the ranking.
        total: trials in the study.
        infeasible: trials of the whole study with a constraint value > 0.
    """

    study: str
    objectives: list[Objective]
    sort_key: str
    descending: bool
    param_names: list[str]
    entries: list[Entry]
    total: int
    infeasible: int

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def objectives(study: optuna.Study) -> list[Objective]:
    """The study's objectives, named by ``study.metric_names`` when it has them."""
    pairs = zip(objective_names(study), study.directions, strict=True)
    return [Objective(name, d == StudyDirection.MAXIMIZE) for name, d in pairs]


def _number(value: Any) -> float | None:
    """``value`` as a finite number, else None (bools, strings, NaN and dicts are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def sort_keys(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[str]:
    """What the leaderboard can be sorted by: the objectives, then every user attribute that
    holds a number in some trial (``test_acc``, ``seconds``, ``epochs_run``, ``macs``, ...)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    attrs = {k for t in trials for k, v in t.user_attrs.items() if _number(v) is not None}
    names = [o.name for o in objectives(study)]
    return names + sorted(attrs - set(names))


def _param_names(trials: list[FrozenTrial]) -> list[str]:
    names: dict[str, None] = {}
    for t in sorted(trials, key=lambda t: t.number):
        names.update(dict.fromkeys(t.params))
    return list(names)


def leaderboard(
    study: optuna.Study,
    sort: str | None = None,
    top: int = 10,
    descending: bool | None = None,
    params: list[str] | None = None,
) -> Leaderboard:
    """Rank ``study``'s trials by ``sort`` and keep the first ``top``.

    Args:
        study: a single- or multi-objective study.
        sort: an objective name or a numeric user attribute (see :func:`sort_keys`); default:
            the study's (first) objective.
        top: rows to keep, >= 1.
        descending: larger values first; default: best first for an objective (its direction),
            larger first for a user attribute.
        params: the parameters to show; default: every parameter of the study.

    Raises:
        UserError: an unknown sort key or parameter (names what is allowed), or ``top`` < 1.
    """
    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    trials = study.get_trials(deepcopy=False)
    goals = objectives(study)
    keys = sort_keys(study, trials)
    sort = goals[0].name if sort is None else sort
    if sort not in keys:
        raise UserError(
            f"unknown sort key {sort!r} for study {study.study_name!r}; allowed: {', '.join(keys)}"
        )
    index = next((i for i, o in enumerate(goals) if o.name == sort), None)
    if descending is None:
        descending = goals[index].maximize if index is not None else True
    all_params = _param_names(trials)
    if params:
        unknown = [p for p in params if p not in all_params]
        if unknown:
            raise UserError(
                f"unknown parameter {unknown[0]!r} in study {study.study_name!r}; allowed: "
                f"{', '.join(all_params) or 'none (the study has no trial with parameters)'}"
            )
    pareto: set[int] = set()
    if len(goals) > 1 and any(t.state == TrialState.COMPLETE for t in trials):
        pareto = {t.number for t in study.best_trials}

    def key_of(t: FrozenTrial) -> float | None:
        if index is not None:
            return _number(t.values[index]) if t.values is not None else None
        return _number(t.user_attrs.get(sort))

    def order(t: FrozenTrial) -> tuple[int, float, int]:
        value = key_of(t)
        if value is None:
            return 2, 0.0, t.number
        candidate = t.state == TrialState.COMPLETE and is_feasible(t)
        return (0 if candidate else 1), (-value if descending else value), t.number

    ranked = sorted(trials, key=order)[:top]
    entries = [
        Entry(
            rank=i + 1,
            trial=t,
            values={
                o.name: (_number(t.values[j]) if t.values is not None else None)
                for j, o in enumerate(goals)
            },
            key=key_of(t),
            feasible=is_feasible(t),
            pareto=t.number in pareto,
        )
        for i, t in enumerate(ranked)
    ]
    shown = {p for e in entries for p in e.trial.params}
    return Leaderboard(
        study=study.study_name,
        objectives=goals,
        sort_key=sort,
        descending=descending,
        param_names=list(params) if params else [p for p in all_params if p in shown],
        entries=entries,
        total=len(trials),
        infeasible=sum(not is_feasible(t) for t in trials),
    )
