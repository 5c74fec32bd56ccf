"""The MLflow :class:`Tracker`: experiments, the study's parent run, starting and reopening
runs, and reading runs back. Every MLflow write of the project goes through one.

Layout: one experiment per study (``cifar-hpo/<study>``); one parent run per study (its id is
kept in the Optuna study's user attributes so every worker nests under it); one nested run per
trial named ``trial-<number>``. The callers pass plots and summaries in as files and dicts; this
module knows nothing of Optuna (a study is only asked for its name and user attributes).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cifar_hpo.provenance import run_tags
from cifar_hpo.record import PARENT_RUN_ATTR
from cifar_hpo.tracking import models
from cifar_hpo.tracking._util import now_ms, param_value
from cifar_hpo.tracking.client import (
    apply_env_defaults,
    check_tracking_server,
    default_tracking_uri,
    make_client,
)
from cifar_hpo.tracking.lifecycle import open_run, trial_spec
from cifar_hpo.tracking.schema import (
    CHAMPION_ALIAS,
    EXPERIMENT_TAGS,
    MLFLOW_UI_ADDRESS,
    MLFLOW_VIEW,
    ROLE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    Role,
    RunRecord,
    experiment_name,
)
from cifar_hpo.tracking.trial_run import TrialRun


def resolved_params(config) -> dict[str, Any]:
    """``config.to_flat()`` plus every model hyperparameter left at its builder default
    (``model.width``, ``model.scale`` ...), so that runs compare on the same columns."""
    from cifar_hpo.models import model_info

    flat = config.to_flat()
    for key, value in model_info(config.model.name).hparams.items():
        flat.setdefault(f"model.{key}", value)
    return flat


class Tracker:
    """Explicit-run-id wrapper over ``MlflowClient``: every MLflow write of the project.

    Args:
        tracking_uri: MLflow tracking URI; None uses ``MLFLOW_TRACKING_URI`` or MLflow's default.
        system_metrics: log MLflow system metrics (CPU, memory, disk, network; GPU where
            present) to every trial and train run, sampled every 10 s.

    Raises:
        TrackingError: an ``http(s)`` tracking server does not answer within 5 s.
    """

    def __init__(self, tracking_uri: str | None = None, *, system_metrics: bool = True):
        apply_env_defaults()
        self.tracking_uri = tracking_uri or default_tracking_uri()
        check_tracking_server(self.tracking_uri)
        self.system_metrics = system_metrics

    @functools.cached_property
    def client(self) -> MlflowClient:
        """The ``MlflowClient``, made at first use (a local store's database is created only
        when something is logged, so a command refused early leaves no file behind)."""
        return make_client(self.tracking_uri)

    # ------------------------------------------------------------------ experiments
    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created if missing (restored if deleted), tagged
        ``mlflow.experimentKind = custom_model_development`` (:data:`EXPERIMENT_TAGS`, also
        added to an existing experiment that lacks it): the model-training kind. MLflow 3.17's
        UI shows the runs table only with ``?workflowType=machine_learning`` in the page's URL
        (``#/experiments/<id>/runs?workflowType=machine_learning``) or once the browser has
        chosen "Model training"; a fresh browser profile otherwise opens the GenAI view."""
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

    def find_experiment_id(self, name: str) -> str | None:
        """Id of experiment ``name`` when it exists; never creates one."""
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else None

    def experiment_names(self, like: str) -> list[str]:
        """Names of the experiments matching the SQL ``LIKE`` pattern ``like``
        (``cifar-hpo/%``)."""
        found = self.client.search_experiments(filter_string=f"name LIKE '{like}'")
        return [exp.name for exp in found]

    def runs_table_url(self, experiment: str) -> str:
        """Where a browser shows ``experiment``'s runs table: ``mlflow ui``'s address (or the
        tracking server's) with ``?workflowType=machine_learning``, without which MLflow 3.17
        opens a fresh browser profile on its GenAI overview."""
        uri = self.tracking_uri.rstrip("/")
        base = uri if uri.startswith(("http://", "https://")) else MLFLOW_UI_ADDRESS
        return f"{base}/#/experiments/{self.experiment_id(experiment)}/runs?{MLFLOW_VIEW}"

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
            tags={STUDY_TAG: study.study_name, ROLE_TAG: Role.STUDY.value},
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
            run_id, params=[Param(k, param_value(v)) for k, v in spec_summary.items()]
        )
        return run_id

    def _reuse_parent(self, study) -> str | None:
        """The stored parent run id, marked RUNNING; None when there is none or it was deleted."""
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if not run_id:
            return None
        return run_id if self._mark_running(run_id) else None

    def _mark_running(self, run_id: str) -> bool:
        """Set an existing run RUNNING again; False when it is deleted or gone for good."""
        try:
            if self.client.get_run(run_id).info.lifecycle_stage == "deleted":
                return False
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return False
        return True

    def finish_run(
        self,
        run_id: str,
        status: str = "FINISHED",
        metrics: dict[str, float] | None = None,
        files: str | Path | None = None,
    ) -> None:
        """Log ``metrics`` (step 0) and the contents of folder ``files`` to a run, then set its
        status. The status is set even when logging fails (the error is then re-raised), so no
        run is left RUNNING."""
        try:
            if metrics:
                ts = now_ms()
                self.client.log_batch(
                    run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()]
                )
            if files is not None:
                self.client.log_artifacts(run_id, str(files))
        finally:
            self.client.set_terminated(run_id, status=status)

    def run_status(self, run_id: str) -> str:
        """MLflow status of a run: RUNNING, FINISHED, FAILED, KILLED or SCHEDULED."""
        return self.client.get_run(run_id).info.status

    def running_trial_runs(self, study_name: str) -> list[tuple[str, int]]:
        """(run id, trial number) of the study's trial runs that are still RUNNING."""
        runs = self.find_runs(
            experiment_name(study_name),
            f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = '{Role.TRIAL.value}'",
            max_results=10000,
        )
        found = []
        for run in runs:
            try:
                found.append((run.run_id, int(run.tags.get(TRIAL_TAG, ""))))
            except ValueError:
                continue
        return found

    # ------------------------------------------------------------------ runs
    def start_trial(
        self,
        study_name: str,
        parent_run_id: str | None,
        trial_number: int,
        config,
        macs: int | None = None,
    ) -> TrialRun:
        """A nested run ``trial-<n>`` under the study's parent run, params logged
        (:func:`~cifar_hpo.tracking.lifecycle.trial_spec`); the caller ends it."""
        spec = trial_spec(study_name, parent_run_id, trial_number, config, macs=macs)
        return open_run(self, spec)[0]

    def start_run(
        self,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        config=None,
        *,
        macs: int | None = None,
        system_metrics: bool | None = None,
    ) -> TrialRun:
        """A run in ``experiment`` with ``tags`` plus the provenance tags of ``config`` (git
        commit, versions, CPU, device, precision, seed) and its resolved params.

        Args:
            macs: forward MACs per image of the config's model; with it each epoch also logs
                ``train_flops`` (training FLOPs so far: MACs x 2 x 3 per training image).
            system_metrics: override the tracker's setting for this run.
        """
        exp_id = self.experiment_id(experiment)
        if config is not None:
            tags = {**tags, **run_tags(config)}
        run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        if config is not None:
            params = [Param(k, param_value(v)) for k, v in resolved_params(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i : i + 100])
        if macs:
            self.client.log_batch(run_id, metrics=[Metric("macs", float(macs), now_ms(), 0)])
        monitor = self.system_metrics if system_metrics is None else system_metrics
        return TrialRun(self, run_id, macs=macs, system_metrics=monitor)

    def reopen_run(self, run_id: str, macs: int | None = None) -> TrialRun | None:
        """An existing run marked RUNNING again (a resumed ``cifar-hpo train``); None when it
        no longer exists or was deleted."""
        if not self._mark_running(run_id):
            return None
        return TrialRun(self, run_id, macs=macs, system_metrics=self.system_metrics)

    def log_folder(self, run_id: str, folder: str | Path, artifact_path: str) -> None:
        """Log the files of ``folder`` to a run (finished or not) under ``artifact_path``."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    # ------------------------------------------------------------------ reading runs back
    def run_record(self, run_id: str) -> RunRecord | None:
        """What a run holds apart from its artifacts; None when there is no such run (or it
        was deleted)."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return None
        if run.info.lifecycle_stage == "deleted":
            return None
        experiment = getattr(self.client.get_experiment(run.info.experiment_id), "name", "")
        return _record(run, experiment)

    def find_runs(
        self,
        experiment: str,
        filter_string: str = "",
        *,
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[RunRecord]:
        """The runs of experiment ``experiment`` (by name) that match MLflow's
        ``filter_string``, in ``order_by`` order; empty when the experiment does not exist."""
        exp_id = self.find_experiment_id(experiment)
        if exp_id is None:
            return []
        runs = self.client.search_runs(
            [exp_id], filter_string=filter_string, order_by=order_by, max_results=max_results
        )
        return [_record(run, experiment) for run in runs]

    def download_artifact(self, run_id: str, path: str, folder: str | Path) -> Path | None:
        """Download the artifact ``path`` of a run into ``folder``; its local path, or None
        when the run has no such artifact."""
        try:
            return Path(self.client.download_artifacts(run_id, path, str(folder)))
        except (MlflowException, OSError):
            return None

    def read_json(self, run_id: str, path: str) -> Any | None:
        """The JSON artifact ``path`` of a run, parsed; None when the run has no such file."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download_artifact(run_id, path, tmp)
            return json.loads(local.read_text()) if local is not None else None

    # ------------------------------------------------------------------ models and registry
    def live_models(self, experiment: str) -> list[Any]:
        """The experiment's logged models that are not deleted (see :mod:`.models`)."""
        return models.live_models(self.client, experiment)

    def live_model(self, model_id: str | None) -> str | None:
        """``model_id`` when that logged model exists and is READY, else None."""
        return models.live_model(self.client, model_id)

    def delete_model(self, model_id: str, registered_name: str | None = None) -> None:
        """Delete a logged model and the registry versions of ``registered_name`` made from
        it (:func:`~cifar_hpo.tracking.models.delete_model`)."""
        models.delete_model(self.client, model_id, registered_name)

    def champion_version(self, registered_name: str, alias: str = CHAMPION_ALIAS) -> Any | None:
        """The registry version holding ``alias`` (default ``champion``), or None."""
        return models.champion_version(self.client, registered_name, alias)

    def register_champion(
        self, registered_name: str, model_id: str, tags: dict[str, Any], alias: str = CHAMPION_ALIAS
    ) -> str:
        """Give ``model_id`` the ``alias`` of ``registered_name``; returns the version
        (:func:`~cifar_hpo.tracking.models.register_champion`)."""
        return models.register_champion(self.client, registered_name, model_id, tags, alias)

    def alias_version(self, registered_name: str, alias: str) -> tuple[str, str, str | None] | None:
        """(version, source run id, logged model id) behind ``alias``, or None."""
        return models.alias_version(self.client, registered_name, alias)

    def aliases(self, registered_name: str) -> list[str]:
        """The aliases of a registered model, sorted; empty when it does not exist."""
        return models.aliases(self.client, registered_name)

    def load_weights(self, run_id: str, model_id: str | None) -> dict[str, Any] | None:
        """The weights a run's model was logged with, or None when neither the logged model
        nor the run's legacy weights exist (:func:`~cifar_hpo.tracking.models.load_weights`).

        Raises:
            CheckpointError: the file exists but is not a weights file of ours.
        """
        return models.load_weights(self.client, self.tracking_uri, run_id, model_id)


def _record(run, experiment: str) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        experiment=experiment,
        status=run.info.status,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
    )
