"""The best trial of a study and its export to a self-contained model file."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.tracking import MlflowClient

from cifar_hpo.errors import CheckpointError, SweepSpecError
from cifar_hpo.export import export_classifier
from cifar_hpo.models import create_model
from cifar_hpo.sweep.champion import CHAMPION_ATTR
from cifar_hpo.sweep.refit import REFIT_ATTR
from cifar_hpo.sweep.report import best_trial
from cifar_hpo.sweep.storage import (
    MODEL_ID_ATTR,
    RUN_ID_ATTR,
    load_stored_study,
    make_storage,
)
from cifar_hpo.tracking import WEIGHTS_FILE


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


def find_best(study_name: str, storage: str | None = None) -> BestTrial:
    """The best COMPLETE trial of ``study_name``; when the study refit that trial's
    configuration at full fidelity, its run, model and test accuracy are the refit's.

    Raises:
        SweepSpecError: unknown study (lists stored ones) or no completed trial yet.
    """
    study = load_stored_study(study_name, make_storage(storage))
    best = best_trial(study)
    if best is None:
        n = len(study.get_trials(deepcopy=False))
        raise SweepSpecError(
            f"study {study_name!r} has no completed trial yet ({n} trials in other states); "
            f"run: cifar-hpo sweep --study {study_name} --trials N"
        )
    champion = study.user_attrs.get(CHAMPION_ATTR) or {}
    refit = study.user_attrs.get(REFIT_ATTR) or {}
    refit = refit if refit.get("trial") == best.number and refit.get("model_id") else None
    return BestTrial(
        study=study_name,
        number=best.number,
        value=float(best.value),
        params=dict(best.params),
        run_id=refit["run_id"] if refit else best.user_attrs.get(RUN_ID_ATTR),
        model_id=refit["model_id"] if refit else best.user_attrs.get(MODEL_ID_ATTR),
        registry_version=champion.get("version") if champion.get("trial") == best.number else None,
        test_acc=refit["test_acc"] if refit else best.user_attrs.get("test_acc"),
        user_attrs=dict(best.user_attrs),
        refit=refit,
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
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one-line output
    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if best.model_id:
                location = client.get_logged_model(best.model_id).artifact_location
                local = mlflow.artifacts.download_artifacts(
                    f"{location}/extra_files/{WEIGHTS_FILE}",
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
            else:
                local = client.download_artifacts(best.run_id, "weights/state_dict.pt", tmp)
        except Exception as err:  # noqa: BLE001 - MLflow raises several types
            raise CheckpointError(
                f"trial {best.number} (run {best.run_id}) has no logged weights: {err}"
            ) from None
        state = torch.load(local, map_location="cpu", weights_only=True)
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
