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
from cifar_hpo.engine import make_splits, train
from cifar_hpo.sweep.ranking import best_trial, primary_value
from cifar_hpo.tracking import NullTracker, RunOutcome, Tracker, experiment_name

#: study user attribute: {"trial", "run_id", "model_id", "epochs", "val_acc", "test_acc",
#: "search_value", "seconds"}
REFIT_ATTR = "refit"
#: study user attribute: the reference recipe's refit, same keys as ``refit``
REFERENCE_REFIT_ATTR = "reference_refit"


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


def refit_best(
    study: optuna.Study,
    base: TrainConfig,
    data: CifarData,
    epochs: float,
    *,
    tracker: Tracker | NullTracker,
    parent_run_id: str | None,
    callbacks: list | None = None,
    trial: optuna.trial.FrozenTrial | None = None,
    reference: bool = False,
    holdout: bool = True,
) -> RefitResult | None:
    """Retrain the study's best trial's configuration (or ``trial``'s) for ``epochs`` epochs on
    the whole training split, tracked as a ``refit`` child run with its model logged, and record
    it on the study (``refit``). ``reference=True``: the reference recipe's refit, a
    ``refit-reference`` run without a model, recorded as ``reference_refit``. ``holdout=False``:
    train on the validation hold-out too (``val_acc`` None, see :func:`refit_config`). Returns
    None when there is no completed trial or ``epochs`` <= 0.

    Raises:
        Exception: what training raised (the refit run is ended FAILED first).
    """
    best = trial if trial is not None else best_trial(study)
    if best is None or epochs <= 0:
        return None
    config = refit_config(base, dict(best.params), epochs, holdout=holdout)
    role = "refit-reference" if reference else "refit"
    tags = {
        "cifar_hpo.study": study.study_name,
        "cifar_hpo.role": role,
        "cifar_hpo.trial": str(best.number),
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = tracker.start_run(
        experiment_name(study.study_name), f"{role}-trial-{best.number}", tags, config
    )
    splits = make_splits(config, data)
    run.log_dataset(data, len(splits.train_idx), len(splits.val_idx))
    with run.ends_on_error():
        result = train(config, data, [run, *(callbacks or [])])
        run.log_result(result)
        if result.status == "diverged":
            run.end(RunOutcome.FAILED, result.message)
            return None
        model_id = None if reference else run.log_model(result, data.mean, data.std)
        run.log_metrics({"search_value": primary_value(best)}, step=len(result.history))
    run.end(RunOutcome.COMPLETE)
    refit = RefitResult(
        trial=best.number,
        run_id=run.run_id,
        model_id=model_id,
        epochs=float(epochs),
        val_acc=result.val.metrics["acc"] if result.val else None,
        test_acc=result.test.metrics["acc"] if result.test else None,
        search_value=primary_value(best),
        seconds=result.seconds,
    )
    study.set_user_attr(REFERENCE_REFIT_ATTR if reference else REFIT_ATTR, refit.as_attr())
    return refit
