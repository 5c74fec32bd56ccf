"""The best trial of a study and its export to a self-contained model file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cifar_hpo.errors import CheckpointError, SweepSpecError
from cifar_hpo.export import export_classifier
from cifar_hpo.models import create_model
from cifar_hpo.record import TEST_ACC_ATTR
from cifar_hpo.sweep.champion import CHAMPION_ATTR, champion_trial
from cifar_hpo.sweep.finalists import RACE_ATTR
from cifar_hpo.sweep.ranking import primary_value, ranked_trials, rule_pick
from cifar_hpo.sweep.refit import REFERENCE_REFIT_ATTR, REFIT_ATTR
from cifar_hpo.sweep.spec import LimitSpec
from cifar_hpo.sweep.storage import MODEL_ID_ATTR, RUN_ID_ATTR, load_stored_study, make_storage
from cifar_hpo.tracking import Tracker


@dataclass
class BestTrial:
    """Summary of a study's best completed trial."""

    study: str
    number: int
    value: float
    params: dict[str, Any]
    run_id: str | None
    model_id: str | None
    registry_version: str | None
    refit: dict[str, Any] | None  # the refit of this trial's configuration (see sweep.refit)
    test_acc: float | None
    user_attrs: dict[str, Any]
    #: the study's reference recipe refit with the champion's epochs (``budget.refit_reference``)
    reference: dict[str, Any] | None = None
    #: the finalists' race (:mod:`cifar_hpo.sweep.finalists`): arms, statistics, summary
    race: dict[str, Any] | None = None


def load_existing_study(study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a stored study.

    Raises:
        SweepSpecError: unknown study (lists the stored ones).
    """
    return load_stored_study(study_name, make_storage(storage))


def _limits_text(limits: Mapping[str, LimitSpec]) -> str:
    return " and ".join(limit.describe(name) for name, limit in limits.items())


def choose_trial(
    study: optuna.Study,
    trial: int | None = None,
    limits: Mapping[str, LimitSpec] | None = None,
) -> optuna.trial.FrozenTrial:
    """The trial ``best``/``--export`` stands for: trial number ``trial`` (must be COMPLETE),
    else the best feasible trial within ``limits`` (:func:`~cifar_hpo.sweep.ranking.rule_pick`),
    else the champion (:func:`~cifar_hpo.sweep.champion.champion_trial`: the arm the
    finalists' race promoted, else the best trial).

    Raises:
        SweepSpecError: no such completed trial, no trial within the limits, or no completed
            trial at all (one line saying which and what exists).
    """
    name = study.study_name
    if trial is not None:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found or found[0].state != TrialState.COMPLETE:
            state = found[0].state.name if found else "not in the study"
            done = [t.number for t in ranked_trials(study)][:10]
            raise SweepSpecError(
                f"--trial {trial}: {state}; completed trials of {name!r} (best first): "
                f"{', '.join(map(str, done)) or 'none'}"
            )
        return found[0]
    if limits:
        pick = rule_pick(study, limits)
        if pick is None:
            raise SweepSpecError(
                f"no completed feasible trial of {name!r} with {_limits_text(limits)}"
            )
        return pick
    best = champion_trial(study)
    if best is None:
        n = len(study.get_trials(deepcopy=False))
        done = len(ranked_trials(study))
        what = (
            f"no feasible trial: its {done} completed trials all violate a constraint"
            if done
            else f"no completed trial yet ({n} trials in other states)"
        )
        raise SweepSpecError(
            f"study {name!r} has {what}; run: cifar-hpo sweep --study {name} --trials N"
        )
    return best


def find_best(
    study_name: str,
    storage: str | None = None,
    *,
    trial: int | None = None,
    limits: Mapping[str, LimitSpec] | None = None,
) -> BestTrial:
    """The study's champion trial (or the one :func:`choose_trial` picks with ``trial`` or
    ``limits``); when the study refit that trial's configuration at full fidelity, its run,
    model and test accuracy are the refit's.

    Raises:
        SweepSpecError: unknown study (lists stored ones), or no trial to choose (see
            :func:`choose_trial`).
    """
    study = load_existing_study(study_name, storage)
    best = choose_trial(study, trial, limits)
    champion = study.user_attrs.get(CHAMPION_ATTR) or {}
    refit = study.user_attrs.get(REFIT_ATTR) or {}
    refit = refit if refit.get("trial") == best.number and refit.get("model_id") else None
    return BestTrial(
        study=study_name,
        number=best.number,
        value=primary_value(best),
        params=dict(best.params),
        run_id=refit["run_id"] if refit else best.user_attrs.get(RUN_ID_ATTR),
        model_id=refit["model_id"] if refit else best.user_attrs.get(MODEL_ID_ATTR),
        registry_version=champion.get("version") if champion.get("trial") == best.number else None,
        test_acc=refit["test_acc"] if refit else best.user_attrs.get(TEST_ACC_ATTR),
        user_attrs=dict(best.user_attrs),
        refit=refit,
        reference=study.user_attrs.get(REFERENCE_REFIT_ATTR) or None,
        race=study.user_attrs.get(RACE_ATTR) or None,
    )


def export_best(best: BestTrial, path: str | Path, tracking_uri: str | None = None) -> Path:
    """Rebuild the best trial's model from the weights in its MLflow LoggedModel
    (``extra_files/state_dict.pt``; the run's ``weights/state_dict.pt`` for studies from before
    LoggedModels), loaded with ``weights_only=True``, and write a self-contained
    ``torch.export`` file (see :mod:`cifar_hpo.export`).

    Raises:
        CheckpointError: the trial has no logged weights (its run was not among the top-k).
        OSError: the output path cannot be written.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # an unwritable path fails first
    if not best.run_id:
        raise CheckpointError(f"trial {best.number} has no MLflow run; cannot export it")
    state = Tracker(tracking_uri).load_weights(best.run_id, best.model_id)
    if state is None:
        raise CheckpointError(
            f"trial {best.number} (run {best.run_id}) has no logged weights: its logged model "
            "was deleted or never logged"
        )
    config = state["config"]
    hparams = {k: v for k, v in config["model"].items() if k != "name"}
    model = create_model(config["model"]["name"], len(state["class_names"]), **hparams)
    model.load_state_dict(state["model"])
    return export_classifier(
        model.eval(),
        path,
        class_names=state["class_names"],
        mean=state["mean"],
        std=state["std"],
        tta=int(config.get("tta", 0)),
        metadata={
            "model": config["model"]["name"],
            "study": best.study,
            "trial": best.number,
            "val_value": best.value,
            "test_acc": best.test_acc,
            "refit": best.refit is not None,
            "mlflow_run_id": best.run_id,
            "config": config,
        },
    )
