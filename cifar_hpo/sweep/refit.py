"""Refit: the study's best configuration retrained at full fidelity, as the champion.

A trial is trained at search fidelity (few epochs, a share of the training split); its value
ranks configurations, not models. After the search, :func:`refit_best` trains the best trial's
configuration on the whole training split for the refit's epochs (its LR schedule spans them),
as a child run of the study's parent tagged ``cifar_hpo.role = refit``, scores validation and
test once, logs its model and records it on the study (``refit`` user attribute), so that the
registry's ``champion`` (see :func:`cifar_hpo.sweep.champion.reconcile_champion`) and
``cifar-hpo best --export`` use the refit model rather than the low-fidelity trial's.

With ``budget.refit_reference`` the study's reference recipe (its first enqueued config, see
:func:`reference_trial`) is refit too, with the champion's epochs, as a ``refit-reference`` run
without a logged model (``reference_refit`` user attribute): the bar the champion is compared
with at equal fidelity (issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from cifar_hpo.config import TrainConfig, with_overrides
from cifar_hpo.data import CifarData
from cifar_hpo.engine import Result
from cifar_hpo.record import REFERENCE_REFIT_ATTR, REFIT_ATTR  # noqa: F401 (re-exported)
from cifar_hpo.sweep.ranking import best_trial, primary_value
from cifar_hpo.tracking import (
    FIDELITY_TAG,
    PHASE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    Role,
    RunSpec,
    RunTracker,
    experiment_name,
    tracked_run,
)


@dataclass
class RefitResult:
    """What a refit produced (accuracies are fractions, ``seconds`` wall time)."""

    trial: int
    run_id: str | None
    model_id: str | None
    epochs: float
    val_acc: float | None
    test_acc: float | None
    search_value: float
    seconds: float
    seed: int | None = None

    def as_attr(self) -> dict[str, Any]:
        return dict(self.__dict__)


def refit_config(
    base: TrainConfig, params: dict[str, Any], epochs: float, *, holdout: bool = True
) -> TrainConfig:
    """The best trial's configuration at full fidelity: its parameters on top of the base,
    the whole training split (``data.train_fraction`` 1) and ``epochs`` epochs;
    ``holdout=False`` also trains on the validation hold-out (``data.val_fraction`` 0: all
    50,000 CIFAR training images, no validation score)."""
    overrides = {**params, "data.train_fraction": 1.0, "epochs": epochs}
    if not holdout:
        overrides["data.val_fraction"] = 0.0
    return with_overrides(base, overrides)


def reference_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's reference recipe: the first completed trial whose parameters were enqueued
    (the spec's first ``enqueue`` entry runs first), or None."""
    enqueued = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.system_attrs.get("fixed_params")
    ]
    return min(enqueued, key=lambda t: t.number) if enqueued else None


def refit_run(
    study: optuna.Study,
    base: TrainConfig,
    data: CifarData,
    trial: optuna.trial.FrozenTrial,
    epochs: float,
    *,
    tracker: RunTracker,
    parent_run_id: str | None,
    role: str = "refit",
    seed: int | None = None,
    log_model: bool = True,
    holdout: bool = True,
    callbacks: list | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[RefitResult, Result] | None:
    """Retrain ``trial``'s configuration for ``epochs`` epochs on the whole training split
    (``seed``: the run's random seed, default the base config's), tracked as a child run of
    the study's parent with tag ``cifar_hpo.role`` = ``role`` (and ``tags``); its model is
    logged when ``log_model``. Writes nothing on the study.

    Returns:
        (the refit's record, the training result with its model and test report), or None
        when training diverged (the run is ended FAILED).

    Raises:
        Exception: what training raised (the refit run is ended FAILED first).
    """
    params = dict(trial.params)
    if seed is not None:
        params["seed"] = seed
    config = refit_config(base, params, epochs, holdout=holdout)
    spec = RunSpec(
        Role(role),
        experiment_name(study.study_name),
        f"{role}-trial-{trial.number}",
        config,
        tags={
            STUDY_TAG: study.study_name,
            TRIAL_TAG: str(trial.number),
            PHASE_TAG: "refit",
            FIDELITY_TAG: f"{epochs:g} epochs, data.train_fraction 1",
            **(tags or {}),
        },
        parent_run_id=parent_run_id,
        log_model=log_model,
        callbacks=tuple(callbacks or ()),
    )
    with tracked_run(tracker, spec) as tracked:
        tracked.log_dataset(data)
        result = tracked.train(data)
        if not tracked.record(result, data):
            return None
        tracked.run.log_metrics({"search_value": primary_value(trial)}, step=len(result.history))
    refit = RefitResult(
        trial=trial.number,
        run_id=tracked.run_id,
        model_id=tracked.model_id,
        epochs=float(epochs),
        val_acc=result.val.metrics["acc"] if result.val else None,
        test_acc=result.test.metrics["acc"] if result.test else None,
        search_value=primary_value(trial),
        seconds=result.seconds,
        seed=config.seed,
    )
    return refit, result


def refit_best(
    study: optuna.Study,
    base: TrainConfig,
    data: CifarData,
    epochs: float,
    *,
    tracker: RunTracker,
    parent_run_id: str | None,
    callbacks: list | None = None,
    trial: optuna.trial.FrozenTrial | None = None,
    reference: bool = False,
    holdout: bool = True,
) -> RefitResult | None:
    """Retrain the study's best trial's configuration (or ``trial``'s) for ``epochs`` epochs on
    the whole training split (:func:`refit_run`), and record it on the study (``refit``).
    ``reference=True``: the reference recipe's refit, a ``refit-reference`` run without a
    model, recorded as ``reference_refit``. ``holdout=False``: train on the validation hold-out
    too (``val_acc`` None, see :func:`refit_config`). Returns None when there is no completed
    trial, ``epochs`` <= 0 or training diverged.

    Raises:
        Exception: what training raised (the refit run is ended FAILED first).
    """
    best = trial if trial is not None else best_trial(study)
    if best is None or epochs <= 0:
        return None
    done = refit_run(
        study,
        base,
        data,
        best,
        epochs,
        tracker=tracker,
        parent_run_id=parent_run_id,
        role="refit-reference" if reference else "refit",
        log_model=not reference,
        holdout=holdout,
        callbacks=callbacks,
    )
    if done is None:
        return None
    study.set_user_attr(REFERENCE_REFIT_ATTR if reference else REFIT_ATTR, done[0].as_attr())
    return done[0]
