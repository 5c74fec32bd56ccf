"""Models in MLflow: a run's LoggedModel (``pt2`` plus the weights file for re-export), the
Model Registry (champion and rule aliases), and loading a run's weights back.

Each function takes the ``MlflowClient`` it works through; :class:`~cifar_hpo.tracking.Tracker`
and :class:`~cifar_hpo.tracking.TrialRun` expose them as methods.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from cifar_hpo.engine import Result
from cifar_hpo.errors import CheckpointError, first_line
from cifar_hpo.export import NormalizedClassifier
from cifar_hpo.tracking._util import now_ms, strings
from cifar_hpo.tracking.schema import (
    CHAMPION_ALIAS,
    LEGACY_WEIGHTS_ARTIFACT,
    MODEL_ID_TAG,
    MODEL_TAG_KEYS,
    WEIGHTS_FILE,
)


# ----------------------------------------------------------------------------- logging a model
def log_logged_model(client: MlflowClient, run_id: str, result: Result, mean, std) -> str:
    """Log ``result``'s model as an MLflow 3 LoggedModel of run ``run_id`` (``pt2``, loads
    without pickle), linked to the run and to its final metrics (step = epochs run), with the
    weights, config and class names as ``extra_files/state_dict.pt`` for re-export. Returns the
    model id (``models:/<id>`` loads it).

    The logged module takes float32 (B, 3, 32, 32) RGB in [0, 1] and returns logits
    (B, classes), test-time augmentation included.
    """
    run = client.get_run(run_id)
    # created here, in the run's experiment (log_model alone would use the active one)
    model = client.create_logged_model(
        run.info.experiment_id,
        name="model",
        source_run_id=run_id,
        tags={k: v for k, v in run.data.tags.items() if k in MODEL_TAG_KEYS},
        params={k: v for k, v in run.data.params.items()},
        model_type="classifier",
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model_dir = _save_pt2(result, mean, std, Path(tmp))
            client.log_model_artifacts(model.model_id, str(model_dir))
        except BaseException:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    step = len(result.history)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    ts = now_ms()
    linked = [  # the run's final metrics, as the model's (its Models tab columns)
        Metric(k, v, ts, step, model_id=model.model_id, run_id=run_id)
        for k, v in run.data.metrics.items()
        if k.startswith(("final_val_", "test_")) or k in ("num_params", "macs")
    ]
    if linked:
        client.log_batch(run_id, metrics=linked)
    client.set_tag(run_id, MODEL_ID_TAG, model.model_id)
    return model.model_id


def _save_pt2(result: Result, mean, std, tmp: Path) -> Path:
    """Write the ``pt2`` model folder (with the weights file as an extra file) under ``tmp``;
    returns the folder. Saved locally, then uploaded through the caller's client:
    ``mlflow.pytorch.log_model`` would write to the global tracking URI and active experiment."""
    wrapper = NormalizedClassifier(result.model, mean, std, result.config.tta)
    wrapper = wrapper.float().cpu().eval()
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, 32, 32))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(result.class_names)))]),
    )
    example = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    weights = tmp / WEIGHTS_FILE
    torch.save(
        {
            "model": result.model.state_dict(),
            "config": result.config.to_dict(),
            "class_names": list(result.class_names),
            "mean": list(mean),
            "std": list(std),
        },
        weights,
    )
    model_dir = tmp / "model"
    mlflow.pytorch.save_model(
        wrapper,
        str(model_dir),
        signature=signature,
        input_example=example,
        serialization_format="pt2",
        metadata={"class_names": list(result.class_names)},
        extra_files=[str(weights)],
        # explicit: MLflow's inference re-imports the model in a subprocess (~6 s)
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )
    return model_dir


# ----------------------------------------------------------------------------- logged models
def live_models(client: MlflowClient, experiment: str) -> list[Any]:
    """The experiment's logged models that are not deleted (MLflow ``LoggedModel``)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    models, token = [], None
    while True:
        page = client.search_logged_models([exp.experiment_id], max_results=100, page_token=token)
        models += list(page)
        token = page.token
        if not token:
            return models


def live_model(client: MlflowClient, model_id: str | None) -> str | None:
    """``model_id`` when that logged model still exists and is READY, else None (models of
    trials that left a study's top k are deleted)."""
    if not model_id:
        return None
    try:
        model = client.get_logged_model(model_id)
    except MlflowException:
        return None
    if str(getattr(model.status, "name", model.status)) != "READY":
        return None
    return model_id


def delete_model(client: MlflowClient, model_id: str, registered_name: str | None = None) -> None:
    """Delete a logged model (it leaves the Models tab) and the registry versions of
    ``registered_name`` made from it; one already deleted is left alone."""
    if registered_name:
        try:
            versions = client.search_model_versions(f"name = '{registered_name}'")
        except MlflowException:
            versions = []
        for version in versions:
            if _version_model_id(version) == model_id:
                client.delete_model_version(registered_name, version.version)
    try:
        client.delete_logged_model(model_id)
    except MlflowException:
        pass  # deleted by another worker meanwhile


def load_weights(
    client: MlflowClient, tracking_uri: str, run_id: str, model_id: str | None
) -> dict[str, Any] | None:
    """The weights file a run's model was logged with (see :data:`WEIGHTS_FILE`): a dict
    with ``model`` (state dict), ``config`` (nested dict), ``class_names``, ``mean`` and
    ``std``, loaded with ``weights_only=True`` on the CPU. From the logged model
    ``model_id``, or for runs from before LoggedModels the run's ``weights/state_dict.pt``.

    Returns:
        None when neither exists (the model was deleted or never logged).

    Raises:
        CheckpointError: the file exists but is not a weights file of ours.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if live_model(client, model_id):
                location = client.get_logged_model(model_id).artifact_location
                local = mlflow.artifacts.download_artifacts(
                    f"{location}/extra_files/{WEIGHTS_FILE}",
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
            else:
                local = client.download_artifacts(run_id, LEGACY_WEIGHTS_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises several types
            raise CheckpointError(
                f"run {run_id}: its model weights do not load ({first_line(err)[:160]})"
            ) from None
    if not isinstance(state, dict) or not {"model", "config", "class_names"} <= set(state):
        raise CheckpointError(f"run {run_id}: its {WEIGHTS_FILE} is not a cifar-hpo one")
    return state


# ----------------------------------------------------------------------------- registry
def champion_version(
    client: MlflowClient, registered_name: str, alias: str = CHAMPION_ALIAS
) -> Any | None:
    """The registry version holding ``alias`` (default ``champion``), or None."""
    try:
        return client.get_model_version_by_alias(registered_name, alias)
    except MlflowException:
        return None


def register_champion(
    client: MlflowClient,
    registered_name: str,
    model_id: str,
    tags: dict[str, Any],
    alias: str = CHAMPION_ALIAS,
) -> str:
    """Make the logged model ``model_id`` the ``alias`` (default ``champion``; an export
    rule's name, e.g. ``champion-under-200k``) of ``registered_name``: reuse the version
    made from it or register a new one, then move the alias. Returns the version."""
    try:
        client.create_registered_model(registered_name, tags=strings(tags, "study"))
    except MlflowException:
        pass  # exists already
    model = client.get_logged_model(model_id)
    existing = [
        v
        for v in client.search_model_versions(f"name = '{registered_name}'")
        if _version_model_id(v) == model_id
    ]
    if existing:
        version = existing[0]
    else:
        version = client.create_model_version(
            registered_name,
            f"models:/{model_id}",
            run_id=model.source_run_id,
            tags={**strings(tags), MODEL_ID_TAG: model_id},
            model_id=model_id,
        )
        for _ in range(50):  # local stores are READY at once; servers may lag
            if client.get_model_version(registered_name, version.version).status == "READY":
                break
            time.sleep(0.2)
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)


def alias_version(
    client: MlflowClient, registered_name: str, alias: str
) -> tuple[str, str, str | None] | None:
    """(version, source run id, logged model id) of the registry version holding
    ``alias``; None when the registered model or the alias does not exist."""
    try:
        version = client.get_model_version_by_alias(registered_name, alias)
    except MlflowException:
        return None
    model_id = _version_model_id(version)
    run_id = version.run_id
    if not run_id and model_id:
        try:
            run_id = client.get_logged_model(model_id).source_run_id
        except MlflowException:
            run_id = None
    if not run_id:
        return None
    return str(version.version), run_id, model_id


def aliases(client: MlflowClient, registered_name: str) -> list[str]:
    """The aliases of a registered model, sorted; empty when it does not exist."""
    try:
        return sorted(client.get_registered_model(registered_name).aliases)
    except MlflowException:
        return []


def _version_model_id(version) -> str | None:
    """The logged model a registry version was made from (the tag we set; MLflow's own
    ``model_id`` field is not kept by every store)."""
    return version.tags.get(MODEL_ID_TAG) or getattr(version, "model_id", None)
