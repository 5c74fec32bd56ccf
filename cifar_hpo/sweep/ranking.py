"""Ranking a study's trials: the champion, the Pareto front and the picks of export rules.

One ranking serves single- and multi-objective studies alike:

* A trial is **feasible** when every constraint it recorded (Optuna's
  ``trial.set_constraint``) is <= 0; infeasible trials never become the champion, enter the
  Pareto front or satisfy a rule.
* **The champion** (:func:`best_trial`) is the feasible COMPLETE trial best on the first
  objective (ties broken by the other objectives in order, then by the earlier trial). For one
  objective this is Optuna's ``study.best_trial``; for several it is the front's member best on
  the first objective, e.g. the most accurate model of an accuracy/parameters front.
* **The Pareto front** (:func:`pareto_front`) is Optuna's ``study.best_trials`` (mutually
  non-dominated feasible trials), best first.
* **A rule** such as ``{params: {max: 200000}}`` (spec ``rules``, or ``cifar-hpo best
  --max-params``) picks the best-ranked feasible trial whose measures hold every limit
  (:func:`rule_pick`).

A trial's measures (:func:`trial_measure`) are its objective values and the ``measures`` user
attribute the objective records (params, MACs, latency, training seconds and FLOPs, validation
metrics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from cifar_hpo.record import (
    MACS_ATTR,
    MEASURES_ATTR,  # noqa: F401 (re-exported)
    TEST_ACC_ATTR,
)
from cifar_hpo.sweep.storage import RUN_ID_ATTR


def is_feasible(trial: FrozenTrial) -> bool:
    """Every recorded constraint value <= 0 (a trial without constraints is feasible)."""
    return all(v <= 0.0 for v in trial.constraints.values())


def _signs(study: optuna.Study) -> list[float]:
    return [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]


def rank_key(study: optuna.Study, values: list[float], number: int, feasible: bool = True) -> tuple:
    """The sort key of :func:`ranked_trials` (smaller is better) for a trial's values."""
    signs = _signs(study)
    return (not feasible, *(s * v for s, v in zip(signs, values, strict=True)), number)


def ranked_trials(study: optuna.Study, feasible_only: bool = False) -> list[FrozenTrial]:
    """COMPLETE trials, best first: feasible before infeasible, then by the first objective
    (the others break ties in order, then the earlier trial)."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values is not None and (is_feasible(t) or not feasible_only)
    ]
    return sorted(done, key=lambda t: rank_key(study, t.values, t.number, is_feasible(t)))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The champion trial (see the module docstring), or None when no feasible trial is
    complete."""
    ranked = ranked_trials(study, feasible_only=True)
    return ranked[0] if ranked else None


def primary_value(trial: FrozenTrial) -> float:
    """The trial's first objective value (``trial.value`` of a single-objective study)."""
    return float(trial.values[0])


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna's Pareto front (``study.best_trials``: feasible, mutually non-dominated),
    ordered as :func:`ranked_trials`."""
    front = {t.number for t in study.best_trials}
    return [t for t in ranked_trials(study, feasible_only=True) if t.number in front]


def trial_measure(study: optuna.Study, trial: FrozenTrial, name: str) -> float | None:
    """A named measure of ``trial``: its objective value when ``name`` is an objective of the
    study, else the value the objective recorded in the ``measures`` user attribute (None when
    it was not measured)."""
    names = list(study.metric_names or [])
    if name in names and trial.values is not None:
        return float(trial.values[names.index(name)])
    value = (trial.user_attrs.get(MEASURES_ATTR) or {}).get(name)
    if value is None and name == "macs":
        value = trial.user_attrs.get(MACS_ATTR)
    return None if value is None else float(value)


def rule_holds(study: optuna.Study, trial: FrozenTrial, limits: Mapping[str, Any]) -> bool:
    """Whether every limit (name -> object with ``holds(value)``, e.g.
    :class:`~cifar_hpo.sweep.spec.LimitSpec`) holds for the trial's measures."""
    return all(limit.holds(trial_measure(study, trial, name)) for name, limit in limits.items())


def rule_pick(study: optuna.Study, limits: Mapping[str, Any]) -> FrozenTrial | None:
    """The best-ranked feasible COMPLETE trial within every limit, or None."""
    for trial in ranked_trials(study, feasible_only=True):
        if rule_holds(study, trial, limits):
            return trial
    return None


def objective_names(study: optuna.Study) -> list[str]:
    """The study's metric names (``study.set_metric_names``), else ``value``/``value_i``."""
    if study.metric_names and len(study.metric_names) == len(study.directions):
        return list(study.metric_names)
    n = len(study.directions)
    return ["value"] if n == 1 else [f"value_{i}" for i in range(n)]


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The Pareto front as table rows: trial, each objective by name, params, MACs, test
    accuracy (None where not measured) and the trial's MLflow run id."""
    names = objective_names(study)
    rows = []
    for t in pareto_front(study):
        row: dict[str, Any] = {"trial": t.number}
        row.update({n: v for n, v in zip(names, t.values, strict=True)})
        for extra in ("params", "macs"):
            if extra not in row:
                row[extra] = trial_measure(study, t, extra)
        test = t.user_attrs.get(TEST_ACC_ATTR)
        row["test_acc"] = None if test is None or not math.isfinite(test) else float(test)
        row["mlflow_run_id"] = t.user_attrs.get(RUN_ID_ATTR)
        rows.append(row)
    return rows
