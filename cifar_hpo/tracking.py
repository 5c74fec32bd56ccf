"""MLflow tracking for studies, trials and single runs: every MLflow call of the project.

Layout: one experiment per study (``cifar-hpo/<study>``); one parent run per study (its id is
kept in the Optuna study's user attributes so every worker nests under it); one nested run per
trial named ``trial-<number>`` with params (dotted config names, model defaults resolved),
per-epoch metrics (step = epoch), final test metrics, artifacts, the dataset as a run input and,
for the study's top-k trials, an MLflow 3 LoggedModel (``pt2``) linked to the run and its final
metrics. The champion is registered as ``cifar-hpo-<study>`` and carries the ``champion`` alias.
``cifar-hpo train`` logs the same run layout to the experiment ``train``.

The tracking URI is MLflow's own default (``sqlite:///mlflow.db`` in the working folder with
artifacts in ``mlruns/``) unless ``MLFLOW_TRACKING_URI`` or an explicit URI says otherwise. A
tracking server that does not answer is reported in one line within seconds
(:class:`~cifar_hpo.errors.TrackingError`), not after MLflow's minutes of HTTP retries.

The callers (sweep, reproduce, CLI) pass plots and summaries in as files and dicts; this module
knows nothing of Optuna (a study is only asked for its name and user attributes).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result, TrainState
from cifar_hpo.errors import CheckpointError, TrackingError, first_line
from cifar_hpo.export import NormalizedClassifier
from cifar_hpo.plots import save_run_plots
from cifar_hpo.provenance import run_tags
from cifar_hpo.record import PARENT_RUN_ATTR  # noqa: F401 (re-exported)

#: tags of every experiment we create: the kind MLflow 3's experiment-kind selector writes for
#: "Machine learning". MLflow 3.17's UI does not pick its view from it: the URL's
#: ``?workflowType=machine_learning`` or the browser's remembered GenAI / Model training switch
#: does.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
CHAMPION_ALIAS = "champion"
MODEL_ID_TAG = "cifar_hpo.model_id"  # on a run and a registry version: the LoggedModel id
WEIGHTS_FILE = "state_dict.pt"  # in a LoggedModel's extra_files/: weights, config, class names
#: run tags copied onto a logged model (find it by study and trial in the Models tab)
MODEL_TAG_KEYS = ("cifar_hpo.study", "cifar_hpo.trial", "cifar_hpo.role", "cifar_hpo.recipe")
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


#: ``mlflow ui``'s default address, and the URL query that makes MLflow 3's UI show the
#: model-training views (runs table) instead of the GenAI ones
MLFLOW_UI_ADDRESS = "http://127.0.0.1:5000"
MLFLOW_VIEW = "workflowType=machine_learning"


@dataclass(frozen=True)
class RunRecord:
    """A run as read back: ids, names, status, and its latest metrics, params and tags."""

    run_id: str
    name: str
    experiment: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]

    @property
    def model_id(self) -> str | None:
        """The LoggedModel the run logged (tag :data:`MODEL_ID_TAG`), deleted or not."""
        return self.tags.get(MODEL_ID_TAG) or None


class RunOutcome(Enum):
    """How a tracked run ended, as one value: the Optuna trial state and the MLflow run status
    it is recorded with (``outcome.trial_state``, ``outcome.run_status``)."""

    COMPLETE = ("COMPLETE", "FINISHED")
    PRUNED = ("PRUNED", "KILLED")
    FAILED = ("FAIL", "FAILED")
    INTERRUPTED = ("FAIL", "KILLED")  # Ctrl-C / SIGTERM

    def __init__(self, trial_state: str, run_status: str):
        self.trial_state = trial_state
        self.run_status = run_status

    @classmethod
    def of_trial_state(cls, name: str) -> RunOutcome | None:
        """The outcome recorded for a finished Optuna trial state name; None for RUNNING or
        WAITING."""
        return {"COMPLETE": cls.COMPLETE, "PRUNED": cls.PRUNED, "FAIL": cls.FAILED}.get(name)


#: MLflow's HTTP client retries a dead server for minutes by default, a sweep should not; and
#: its artifact progress bars would break the trial lines.
ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
SERVER_CHECK_TIMEOUT_S = 5.0


def check_tracking_server(uri: str, timeout: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """For an ``http(s)://`` tracking URI, ask the server's ``/health`` once (``timeout``
    seconds); for a ``sqlite:///`` store, check that its database can be written
    (:func:`check_local_store`); other local stores are not checked.

    Raises:
        TrackingError: the server does not answer, or the local store cannot be written (one
            line naming the URI and what to check).
    """
    if uri.startswith("sqlite:///"):
        check_local_store(uri)
        return
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            if reply.status < 400:
                return
            reason = f"HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        reason = first_line(getattr(err, "reason", err))
    raise TrackingError(
        f"MLflow tracking server {uri} does not answer ({reason}); start it (mlflow server "
        "--host HOST --port PORT) or unset MLFLOW_TRACKING_URI to use the local store"
    )


def check_local_store(uri: str) -> None:
    """A ``sqlite:///PATH`` store must be a writable file or sit in a writable folder:
    checked at once, since SQLAlchemy otherwise retries for minutes ("Operation will be
    retried in 51.1 seconds").

    Raises:
        TrackingError: one line naming the store, the folder and what is wrong.
    """
    path = Path(uri.removeprefix("sqlite:///"))
    if str(path) in ("", ":memory:"):
        return
    folder = path.parent if str(path.parent) else Path(".")
    problem = None
    if not folder.is_dir():
        problem = f"folder {folder} does not exist"
    else:
        try:  # a real write: permission bits say nothing for root or on /proc
            if path.exists():
                with open(path, "ab"):
                    pass
            else:
                tempfile.NamedTemporaryFile(dir=folder).close()
        except OSError as err:
            problem = f"{err.strerror} in {folder}"
    if problem is not None:
        raise TrackingError(
            f"MLflow tracking store {uri} cannot be written ({problem}); point "
            "MLFLOW_TRACKING_URI at a writable sqlite:///FILE, or unset it"
        )


def tracking_failure(err: BaseException, uri: str | None) -> TrackingError | None:
    """``err`` as a :class:`TrackingError` when it says the ``http(s)`` tracking server
    stopped answering (a connection error, or MLflow giving up its retries); None otherwise."""
    if isinstance(err, TrackingError):
        return err
    if not uri or not uri.startswith(("http://", "https://")):
        return None
    text = str(err)
    lost = isinstance(err, ConnectionError | urllib.error.URLError) or (
        isinstance(err, MlflowException)
        and any(s in text for s in ("Max retries exceeded", "Connection refused", "timed out"))
    )
    if not lost:
        return None
    return TrackingError(
        f"MLflow tracking server {uri} stopped answering ({first_line(err)[:160]}); restart it "
        "and re-run the same command to continue the study"
    )


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
        for key, value in ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        check_tracking_server(self.tracking_uri)
        self.system_metrics = system_metrics

    @functools.cached_property
    def client(self) -> MlflowClient:
        """The ``MlflowClient``, made at first use (a local store's database is created only
        when something is logged, so a command refused early leaves no file behind)."""
        return MlflowClient(self.tracking_uri)

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
                ts = _now()
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
        exp = self.client.get_experiment_by_name(experiment_name(study_name))
        if exp is None:
            return []
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string="attributes.status = 'RUNNING' and tags.`cifar_hpo.role` = 'trial'",
            max_results=10000,
        )
        found = []
        for run in runs:
            try:
                found.append((run.info.run_id, int(run.data.tags.get("cifar_hpo.trial", ""))))
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
        """A nested run ``trial-<n>`` under the study's parent run, params logged."""
        tags = {
            "cifar_hpo.study": study_name,
            "cifar_hpo.trial": str(trial_number),
            "cifar_hpo.role": "trial",
            "optuna.state": "RUNNING",
        }
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.start_run(
            experiment_name(study_name), f"trial-{trial_number}", tags, config, macs=macs
        )
        run.is_trial = True
        return run

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
            params = [Param(k, _param_value(v)) for k, v in resolved_params(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i : i + 100])
        if macs:
            self.client.log_batch(run_id, metrics=[Metric("macs", float(macs), _now(), 0)])
        monitor = self.system_metrics if system_metrics is None else system_metrics
        return TrialRun(self, run_id, macs=macs, system_metrics=monitor)

    def reopen_run(self, run_id: str, macs: int | None = None) -> TrialRun | None:
        """An existing run marked RUNNING again (a resumed ``cifar-hpo train``); None when it
        no longer exists or was deleted."""
        try:
            if self.client.get_run(run_id).info.lifecycle_stage == "deleted":
                return None
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return None
        return TrialRun(self, run_id, macs=macs, system_metrics=self.system_metrics)

    # ------------------------------------------------------------------ models and registry
    def live_models(self, experiment: str) -> list[Any]:
        """The experiment's logged models that are not deleted (MLflow ``LoggedModel``)."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        models, token = [], None
        while True:
            page = self.client.search_logged_models(
                [exp.experiment_id], max_results=100, page_token=token
            )
            models += list(page)
            token = page.token
            if not token:
                return models

    def delete_model(self, model_id: str, registered_name: str | None = None) -> None:
        """Delete a logged model (it leaves the Models tab) and the registry versions of
        ``registered_name`` made from it; one already deleted is left alone."""
        if registered_name:
            try:
                versions = self.client.search_model_versions(f"name = '{registered_name}'")
            except MlflowException:
                versions = []
            for version in versions:
                if _version_model_id(version) == model_id:
                    self.client.delete_model_version(registered_name, version.version)
        try:
            self.client.delete_logged_model(model_id)
        except MlflowException:
            pass  # deleted by another worker meanwhile

    def champion_version(self, registered_name: str, alias: str = CHAMPION_ALIAS) -> Any | None:
        """The registry version holding ``alias`` (default ``champion``), or None."""
        try:
            return self.client.get_model_version_by_alias(registered_name, alias)
        except MlflowException:
            return None

    def register_champion(
        self,
        registered_name: str,
        model_id: str,
        tags: dict[str, Any],
        alias: str = CHAMPION_ALIAS,
    ) -> str:
        """Make the logged model ``model_id`` the ``alias`` (default ``champion``; an export
        rule's name, e.g. ``champion-under-200k``) of ``registered_name``: reuse the version
        made from it or register a new one, then move the alias. Returns the version."""
        try:
            self.client.create_registered_model(registered_name, tags=_strings(tags, "study"))
        except MlflowException:
            pass  # exists already
        model = self.client.get_logged_model(model_id)
        existing = [
            v
            for v in self.client.search_model_versions(f"name = '{registered_name}'")
            if _version_model_id(v) == model_id
        ]
        if existing:
            version = existing[0]
        else:
            version = self.client.create_model_version(
                registered_name,
                f"models:/{model_id}",
                run_id=model.source_run_id,
                tags={**_strings(tags), MODEL_ID_TAG: model_id},
                model_id=model_id,
            )
            for _ in range(50):  # local stores are READY at once; servers may lag
                if self.client.get_model_version(registered_name, version.version).status == (
                    "READY"
                ):
                    break
                time.sleep(0.2)
        self.client.set_registered_model_alias(registered_name, alias, version.version)
        return str(version.version)

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
        return RunRecord(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            experiment=getattr(self.client.get_experiment(run.info.experiment_id), "name", ""),
            status=run.info.status,
            metrics=dict(run.data.metrics),
            params=dict(run.data.params),
            tags=dict(run.data.tags),
        )

    def read_json(self, run_id: str, path: str) -> Any | None:
        """The JSON artifact ``path`` of a run, parsed; None when the run has no such file."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except (MlflowException, OSError):
                return None
            return json.loads(Path(local).read_text())

    def live_model(self, model_id: str | None) -> str | None:
        """``model_id`` when that logged model still exists and is READY, else None (models of
        trials that left a study's top k are deleted)."""
        if not model_id:
            return None
        try:
            model = self.client.get_logged_model(model_id)
        except MlflowException:
            return None
        if str(getattr(model.status, "name", model.status)) != "READY":
            return None
        return model_id

    def load_weights(self, run_id: str, model_id: str | None) -> dict[str, Any] | None:
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
                if self.live_model(model_id):
                    location = self.client.get_logged_model(model_id).artifact_location
                    local = mlflow.artifacts.download_artifacts(
                        f"{location}/extra_files/{WEIGHTS_FILE}",
                        dst_path=tmp,
                        tracking_uri=self.tracking_uri,
                    )
                else:
                    local = self.client.download_artifacts(run_id, "weights/state_dict.pt", tmp)
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

    def alias_version(self, registered_name: str, alias: str) -> tuple[str, str, str | None] | None:
        """(version, source run id, logged model id) of the registry version holding
        ``alias``; None when the registered model or the alias does not exist."""
        try:
            version = self.client.get_model_version_by_alias(registered_name, alias)
        except MlflowException:
            return None
        model_id = _version_model_id(version)
        run_id = version.run_id
        if not run_id and model_id:
            try:
                run_id = self.client.get_logged_model(model_id).source_run_id
            except MlflowException:
                run_id = None
        if not run_id:
            return None
        return str(version.version), run_id, model_id

    def aliases(self, registered_name: str) -> list[str]:
        """The aliases of a registered model, sorted; empty when it does not exist."""
        try:
            return sorted(self.client.get_registered_model(registered_name).aliases)
        except MlflowException:
            return []

    def log_folder(self, run_id: str, folder: str | Path, artifact_path: str) -> None:
        """Log the files of ``folder`` to a run (finished or not) under ``artifact_path``."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)


class NullTracker:
    """A tracker that records nothing (benchmarks, ``cifar-hpo train --no-track``): every
    method of :class:`Tracker` the sweep, the objective and the CLI call, as a no-op."""

    tracking_uri = None
    system_metrics = False

    def start_trial(self, *args, **kwargs) -> TrialRun:
        """A :class:`NullRun`."""
        return NullRun()

    def start_run(self, *args, **kwargs) -> TrialRun:
        """A :class:`NullRun`."""
        return NullRun()

    def parent_run(self, study, spec_summary: dict[str, Any], settle: float = 0.0) -> str:
        """No parent run: an empty id."""
        return ""

    def finish_run(self, *args, **kwargs) -> None:
        """Nothing to finish."""

    def run_status(self, run_id: str) -> str:
        """Always ``FINISHED``."""
        return "FINISHED"

    def running_trial_runs(self, study_name: str) -> list[tuple[str, int]]:
        """No runs."""
        return []

    def live_models(self, experiment: str) -> list[Any]:
        """No models."""
        return []

    def champion_version(self, registered_name: str, alias: str = "champion") -> None:
        """No registry."""
        return None


class TrialRun(Callback):
    """One MLflow run; as a training callback it logs each epoch's metrics with step=epoch.

    Args:
        tracker: the :class:`Tracker` that made the run.
        run_id: the MLflow run.
        macs: forward MACs per image of the run's model (adds ``train_flops`` per epoch).
        system_metrics: sample MLflow system metrics into the run until :meth:`end`.
    """

    def __init__(
        self,
        tracker: Tracker,
        run_id: str,
        *,
        macs: int | None = None,
        system_metrics: bool = False,
    ):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.macs = macs
        self.ended = False
        self.is_trial = False  # a study's trial run: its end also tags ``optuna.state``
        self._state: TrainState | None = None  # the live training state, for log_partial
        self._monitor = (
            _start_system_metrics(run_id, tracker.tracking_uri) if system_metrics else None
        )

    def on_train_start(self, state: TrainState) -> None:
        self._state = state

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        ts = _now()
        metrics = [
            Metric(k, float(record[k]), ts, int(record["epoch"]))
            for k in EPOCH_METRICS
            if record.get(k) is not None and np.isfinite(record[k])
        ]
        if self.macs:
            flops = float(record.get("images_seen", state.images_seen)) * self.macs * 6
            metrics.append(Metric("train_flops", flops, ts, int(record["epoch"])))
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Log ``values`` at ``step`` (non-finite values are left out)."""
        ts = _now()
        metrics = [Metric(k, float(v), ts, step) for k, v in values.items() if np.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_text(self, text: str, path: str) -> None:
        """Write ``text`` as the artifact file ``path``."""
        self.client.log_text(self.run_id, text, path)

    def log_files(self, paths, folder: str | None = None) -> None:
        """Log each file of ``paths`` under the artifact folder ``folder``."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), folder)

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
            with warnings.catch_warnings():  # two "local" source types match a path: same thing
                warnings.simplefilter("ignore", UserWarning)
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
        """Log the trained model as an MLflow 3 LoggedModel (``pt2``, loads without pickle),
        linked to this run and to its final metrics (step = epochs run), with the weights,
        config and class names as ``extra_files/state_dict.pt`` for re-export. Returns the
        model id (``models:/<id>`` loads it).

        The logged module takes float32 (B, 3, 32, 32) RGB in [0, 1] and returns logits
        (B, classes), test-time augmentation included.
        """
        wrapper = NormalizedClassifier(result.model, mean, std, result.config.tta)
        wrapper = wrapper.float().cpu().eval()
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, 32, 32))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(result.class_names)))]),
        )
        example = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
        run = self.client.get_run(self.run_id)
        # created here, in the run's experiment (log_model alone would use the active one)
        model = self.client.create_logged_model(
            run.info.experiment_id,
            name="model",
            source_run_id=self.run_id,
            tags={k: v for k, v in run.data.tags.items() if k in MODEL_TAG_KEYS},
            params={k: v for k, v in run.data.params.items()},
            model_type="classifier",
        )
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / WEIGHTS_FILE
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
            # saved and uploaded through this tracker's client (``mlflow.pytorch.log_model``
            # would write to the global tracking URI and the active experiment)
            model_dir = Path(tmp) / "model"
            try:
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
                self.client.log_model_artifacts(model.model_id, str(model_dir))
            except BaseException:
                self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
                raise
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        step = len(result.history)
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step)])
        ts = _now()
        linked = [  # the run's final metrics, as the model's (its Models tab columns)
            Metric(k, v, ts, step, model_id=model.model_id, run_id=self.run_id)
            for k, v in run.data.metrics.items()
            if k.startswith(("final_val_", "test_")) or k in ("num_params", "macs")
        ]
        if linked:
            self.client.log_batch(self.run_id, metrics=linked)
        self.client.set_tag(self.run_id, MODEL_ID_TAG, model.model_id)
        return model.model_id

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values stringified)."""
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    @contextlib.contextmanager
    def ends_on_error(self):
        """Inside it, Ctrl-C/SIGTERM ends the run KILLED and any error ends it FAILED with
        the error's first line; the exception propagates. No error path leaves it RUNNING."""
        try:
            yield self
        except KeyboardInterrupt:
            self.end(RunOutcome.INTERRUPTED, "interrupted (Ctrl-C/SIGTERM)")
            raise
        except BaseException as err:
            self.end(RunOutcome.FAILED, f"{type(err).__name__}: {first_line(err)}")
            raise

    def end(self, outcome: RunOutcome, reason: str = "") -> None:
        """Terminate the run with ``outcome.run_status`` (a trial run also gets the tag
        ``optuna.state`` = ``outcome.trial_state``) and the reason of a non-complete end;
        stops system metrics. The status is set even when a tag cannot be written. Calling it
        twice does nothing."""
        if self.ended:
            return
        self.ended = True
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        try:
            tags = {"optuna.state": outcome.trial_state} if self.is_trial else {}
            if reason:
                tags["cifar_hpo.reason"] = reason
            self.set_tags(tags)
        finally:
            self.client.set_terminated(self.run_id, status=outcome.run_status)


class NullRun(TrialRun):
    """A run that records nothing (:class:`NullTracker`): every method is a no-op."""

    def __init__(self) -> None:
        self.run_id = None
        self.macs = None
        self.ended = False

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        pass

    def log_result(self, result: Result) -> None:
        pass

    def log_dataset(self, data, num_train: int, num_val: int) -> None:
        pass

    def log_partial(self) -> None:
        pass

    def log_model(self, result: Result, mean, std) -> str | None:
        return None

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        pass

    def log_text(self, text: str, path: str) -> None:
        pass

    def log_files(self, paths, folder: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def end(self, outcome: RunOutcome, reason: str = "") -> None:
        self.ended = True


def _start_system_metrics(run_id: str, tracking_uri: str):
    """MLflow's system metrics monitor for one run (CPU, memory, disk, network; GPU where
    present), sampling every 10 s; None when it cannot start (psutil missing)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # its start/stop lines at INFO would interleave with every trial's output
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)

        monitor = SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=tracking_uri)
        monitor.start()
        return monitor
    except Exception:  # noqa: BLE001 - metrics are an extra; the run goes on without them
        return None


TRAIN_EXPERIMENT = "train"
RUN_ID_FILE = "mlflow_run_id.txt"  # in a train run folder: the MLflow run it logs to


def tracked_train(
    tracker: Tracker | NullTracker,
    config,
    data,
    callbacks: list[Callback],
    *,
    run_folder: str | Path,
    resume: dict[str, Any] | None = None,
    macs: int | None = None,
) -> tuple[Result, str | None]:
    """``cifar-hpo train`` as an MLflow run in experiment ``train``, laid out like a trial run
    (params, per-epoch metrics, dataset input, artifacts, LoggedModel), named after its run
    folder; a resumed run folder continues its own MLflow run. A crash or Ctrl-C ends the run
    FAILED/KILLED with its reason, never RUNNING.

    Returns:
        (the training :class:`Result`, the MLflow run id or None with a :class:`NullTracker`).
    """
    from cifar_hpo.engine import make_splits, train

    folder = Path(run_folder)
    id_file = folder / RUN_ID_FILE
    run = None
    if resume is not None and id_file.is_file() and isinstance(tracker, Tracker):
        run = tracker.reopen_run(id_file.read_text().strip(), macs=macs)
    if run is None:
        tags = {"cifar_hpo.role": "train", "cifar_hpo.run_folder": str(folder)}
        run = tracker.start_run(TRAIN_EXPERIMENT, folder.name, tags, config, macs=macs)
        splits = make_splits(config, data)
        run.log_dataset(data, len(splits.train_idx), len(splits.val_idx))
        if run.run_id:
            folder.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run.run_id + "\n")
    with run.ends_on_error():
        result = train(config, data, [*callbacks, run], resume=resume)
        run.log_result(result)
        if result.status == "diverged":
            run.end(RunOutcome.FAILED, result.message)
        else:
            run.log_model(result, data.mean, data.std)
            run.end(RunOutcome.COMPLETE)
    return result, run.run_id


def resolved_params(config) -> dict[str, Any]:
    """``config.to_flat()`` plus every model hyperparameter left at its builder default
    (``model.width``, ``model.scale`` ...), so that runs compare on the same columns."""
    from cifar_hpo.models import model_info

    flat = config.to_flat()
    for key, value in model_info(config.model.name).hparams.items():
        flat.setdefault(f"model.{key}", value)
    return flat


def _version_model_id(version) -> str | None:
    """The logged model a registry version was made from (the tag we set; MLflow's own
    ``model_id`` field is not kept by every store)."""
    return version.tags.get(MODEL_ID_TAG) or getattr(version, "model_id", None)


def _strings(tags: dict[str, Any], *only: str) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items() if not only or k in only}


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text[:6000]


def _now() -> int:
    return int(time.time() * 1000)
