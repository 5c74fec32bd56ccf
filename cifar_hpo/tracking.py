"""MLflow tracking for studies and trials, through ``MlflowClient`` with explicit run ids.

Layout: one experiment per study (``cifar-hpo/<study>``); one parent run per study (its id is
kept in the Optuna study's user attributes so every worker nests under it); one nested run per
trial named ``trial-<number>`` with params (dotted config names), per-epoch metrics
(step = epoch), final test metrics, artifacts and, for good trials, a ``pt2`` model. The champion
is registered as ``cifar-hpo-<study>`` and carries the ``champion`` alias.

The tracking URI is MLflow's own default (``sqlite:///mlflow.db`` in the working folder with
artifacts in ``mlruns/``) unless ``MLFLOW_TRACKING_URI`` or an explicit URI says otherwise.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result, TrainState
from cifar_hpo.export import NormalizedClassifier
from cifar_hpo.plots import save_run_plots
from cifar_hpo.provenance import run_tags

PARENT_RUN_ATTR = "mlflow_parent_run_id"
EXPERIMENT_ATTR = "mlflow_experiment_id"
#: tags of every experiment we create: MLflow 3's UI opens these in the model-training view
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
CHAMPION_ALIAS = "champion"
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_top5",
    "val_f1_macro",
    "lr",
    "epoch_seconds",
    "images_per_sec",
)


def experiment_name(study: str) -> str:
    """MLflow experiment of a study."""
    return f"cifar-hpo/{study}"


def registered_model_name(study: str) -> str:
    """Model Registry name of a study's champion."""
    return f"cifar-hpo-{study}"


class Tracker:
    """Thin, explicit-run-id wrapper over ``MlflowClient``.

    Args:
        tracking_uri: MLflow tracking URI; None uses ``MLFLOW_TRACKING_URI`` or MLflow's default.
    """

    def __init__(self, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created if missing (restored if deleted), tagged
        ``mlflow.experimentKind = custom_model_development`` so that ``mlflow ui`` opens it in
        its model-training view (MLflow 3 shows an untagged experiment as a GenAI one)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, tags=EXPERIMENT_TAGS)
            except MlflowException:  # another worker created it first
                exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        for key, value in EXPERIMENT_TAGS.items():
            if exp.tags.get(key) != value:  # experiments made before the tag
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    # ------------------------------------------------------------------ study parent run
    def parent_run(self, study, spec_summary: dict[str, Any], settle: float = 0.0) -> str:
        """The study's parent run id, created once and stored in the study's user attributes.

        Re-running the sweep (or another worker) reuses it and marks it RUNNING again. Workers
        that start together may each find no parent and create one: Optuna's user attributes
        are last-writer-wins, so each creator writes its id, waits ``settle`` seconds for the
        others' writes, re-reads, and a creator whose id lost deletes its run and uses the
        winner. Pass 0 when no other process can use the study at the same time.
        """
        run_id = self._reuse_parent(study)
        if run_id:
            return run_id
        exp_id = self.experiment_id(experiment_name(study.study_name))
        run = self.client.create_run(
            exp_id,
            run_name=f"study-{study.study_name}",
            tags={"cifar_hpo.study": study.study_name, "cifar_hpo.role": "study"},
        )
        run_id = run.info.run_id
        study.set_user_attr(PARENT_RUN_ATTR, run_id)
        if settle > 0:
            time.sleep(settle)
            winner = study.user_attrs.get(PARENT_RUN_ATTR)
            if winner and winner != run_id:
                self.client.delete_run(run_id)
                return self._reuse_parent(study) or winner
        self.client.log_batch(
            run_id,
            params=[Param(k, _param_value(v)) for k, v in spec_summary.items()],
        )
        study.set_user_attr(EXPERIMENT_ATTR, exp_id)
        return run_id

    def _reuse_parent(self, study) -> str | None:
        """The stored parent run id, marked RUNNING; None when there is none or it was deleted."""
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if not run_id:
            return None
        try:
            if self.client.get_run(run_id).info.lifecycle_stage == "deleted":
                return None
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return None  # the run was deleted for good: make a new one
        return run_id

    def finish_parent(self, study, run_id: str, status: str = "FINISHED") -> None:
        """Log the study summary and Optuna plots to the parent run and set its status."""
        from cifar_hpo.sweep.report import study_plots, study_summary

        summary = study_summary(study)
        metrics = [
            Metric(f"trials_{state.lower()}", float(n), _now(), 0)
            for state, n in summary["counts"].items()
        ]
        if summary["best_value"] is not None:
            metrics.append(Metric("best_value", float(summary["best_value"]), _now(), 0))
        self.client.log_batch(run_id, metrics=metrics)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "study_summary.json").write_text(json.dumps(summary, indent=1, default=str))
            study_plots(study, Path(tmp) / "plots")
            self.client.log_artifacts(run_id, tmp)
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ trial runs
    def start_trial(
        self, study_name: str, parent_run_id: str, trial_number: int, config
    ) -> TrialRun:
        """A nested run ``trial-<n>`` under the study's parent run, params logged."""
        exp_id = self.experiment_id(experiment_name(study_name))
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "cifar_hpo.study": study_name,
            "cifar_hpo.trial": str(trial_number),
            "cifar_hpo.role": "trial",
            "optuna.state": "RUNNING",
            **run_tags(config),
        }
        run = self.client.create_run(exp_id, run_name=f"trial-{trial_number}", tags=tags)
        flat = resolved_params(config)
        params = [Param(k, _param_value(v)) for k, v in flat.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        return TrialRun(self, run.info.run_id)


class TrialRun(Callback):
    """One MLflow run; as a training callback it logs each epoch's metrics with step=epoch."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.ended = False
        self._state: TrainState | None = None  # the live training state, for log_partial

    def on_train_start(self, state: TrainState) -> None:
        self._state = state

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        ts = _now()
        metrics = [
            Metric(k, float(record[k]), ts, int(record["epoch"]))
            for k in EPOCH_METRICS
            if record.get(k) is not None and np.isfinite(record[k])
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_result(self, result: Result) -> None:
        """Final metrics (validation and, for completed runs, test) and artifacts: resolved
        config, per-class report (JSON + text), confusion matrix and curve plots."""
        ts, step = _now(), len(result.history)
        metrics = [
            Metric("seconds", result.seconds, ts, step),
            Metric("images_seen", float(result.images_seen), ts, step),
            Metric("num_params", float(result.num_params), ts, step),
        ]
        for prefix, report in (("final_val", result.val), ("test", result.test)):
            if report is not None:
                metrics += [
                    Metric(f"{prefix}_{k}", v, ts, step)
                    for k, v in report.metrics.items()
                    if np.isfinite(v)
                ]
        self.client.log_batch(self.run_id, metrics=metrics)
        report = result.test or result.val
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "config.yaml").write_text(yaml.safe_dump(result.config.to_dict()))
            (folder / "history.json").write_text(json.dumps(result.history, indent=1))
            if report is not None:
                (folder / "per_class.json").write_text(json.dumps(report.per_class, indent=1))
                (folder / "classification_report.txt").write_text(report.text_report() + "\n")
            save_run_plots(result.history, report, result.class_names, folder / "plots")
            self.client.log_artifacts(self.run_id, tmp)

    def log_dataset(self, data, num_train: int, num_val: int) -> None:
        """The dataset as an MLflow input (the runs table's Dataset column): name, digest (the
        cache checksum, shortened to MLflow's 36 characters; the full one in a tag), source,
        and the training/validation/test split sizes as input tags."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        try:
            source = resolve_dataset_source(str(data.source))
        except Exception:  # noqa: BLE001  ("synthetic", "memory": no resolvable location)
            source = CodeDatasetSource({"description": str(data.source)})
        dataset = MetaDataset(source, name=data.name, digest=(data.checksum or "none")[:36])
        tags = {
            "mlflow.data.context": "training",
            "cifar_hpo.checksum": data.checksum or "none",
            "cifar_hpo.train_images": str(num_train),
            "cifar_hpo.val_images": str(num_val),
            "cifar_hpo.test_images": str(len(data.test_labels)),
        }
        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(
            self.run_id, [DatasetInput(entity, [InputTag(k, v) for k, v in tags.items()])]
        )

    def log_partial(self) -> None:
        """Resolved config, history so far and curve plots of a run that ended without a
        :class:`Result` (pruned, or failed during training)."""
        state = self._state
        if state is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "config.yaml").write_text(yaml.safe_dump(state.config.to_dict()))
            (folder / "history.json").write_text(json.dumps(state.history, indent=1))
            if state.history:
                save_run_plots(state.history, None, (), folder / "plots")
            self.client.log_artifacts(self.run_id, tmp)

    def log_model(self, result: Result, mean, std) -> str:
        """Log the trained model as an MLflow ``pt2`` PyTorch model (loads without pickle) plus
        ``weights/state_dict.pt`` for re-export. Returns the model's artifact URI.

        The logged module takes float32 (B, 3, 32, 32) RGB in [0, 1] and returns logits.
        """
        wrapper = NormalizedClassifier(result.model, mean, std, result.config.tta)
        wrapper = wrapper.float().cpu().eval()
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, 32, 32))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(result.class_names)))]),
        )
        example = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow.pytorch.save_model(
                wrapper,
                str(model_dir),
                signature=signature,
                input_example=example,
                serialization_format="pt2",
                metadata={"class_names": list(result.class_names)},
                # explicit: MLflow's inference re-imports the model in a subprocess (~6 s a model)
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            self.client.log_artifacts(self.run_id, str(model_dir), "model")
            weights = Path(tmp) / "state_dict.pt"
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
            self.client.log_artifact(self.run_id, str(weights), "weights")
        self.client.set_tag(self.run_id, "cifar_hpo.model_logged", "true")
        return f"{self.client.get_run(self.run_id).info.artifact_uri}/model"

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values stringified)."""
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    def end(self, status: str, optuna_state: str, reason: str = "") -> None:
        """Terminate the run: FINISHED, KILLED (pruned/interrupted) or FAILED, with reason."""
        if self.ended:
            return
        tags = {"optuna.state": optuna_state}
        if reason:
            tags["cifar_hpo.reason"] = reason
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status=status)
        self.ended = True


def promote_champion(
    tracker: Tracker, study: str, run_id: str, model_uri: str, tags: dict[str, Any]
) -> str:
    """Register ``model_uri`` as a new version of ``cifar-hpo-<study>`` and move the
    ``champion`` alias to it. Returns the version number (string)."""
    client = tracker.client
    name = registered_model_name(study)
    try:
        client.create_registered_model(name, tags={"cifar_hpo.study": study})
    except MlflowException:
        pass  # exists already
    version = client.create_model_version(
        name, model_uri, run_id=run_id, tags={k: str(v) for k, v in tags.items()}
    )
    for _ in range(50):  # local stores are READY at once; servers may lag
        if client.get_model_version(name, version.version).status == "READY":
            break
        time.sleep(0.2)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return str(version.version)


def resolved_params(config) -> dict[str, Any]:
    """``config.to_flat()`` plus every model hyperparameter left at its builder default
    (``model.width``, ``model.scale`` ...), so that runs compare on the same columns."""
    from cifar_hpo.models import model_info

    flat = config.to_flat()
    for key, value in model_info(config.model.name).hparams.items():
        flat.setdefault(f"model.{key}", value)
    return flat


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text[:6000]


def _now() -> int:
    return int(time.time() * 1000)
