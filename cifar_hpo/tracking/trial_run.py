"""One MLflow run being filled: :class:`TrialRun`, a training callback that logs each epoch
and, afterwards, the result, the dataset, partial artifacts and the model, then ends the run.
Every run kind (trial, train, refit, recipe) is one."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mlflow.entities import Metric

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result, TrainState
from cifar_hpo.errors import first_line
from cifar_hpo.plots import save_run_plots
from cifar_hpo.tracking._util import now_ms
from cifar_hpo.tracking.models import log_logged_model
from cifar_hpo.tracking.schema import EPOCH_METRICS, OPTUNA_STATE_TAG, REASON_TAG, RunOutcome


def _unique_key_conflict(err: Exception) -> bool:
    """Whether a tracking store refused an insert on a unique key (SQLite, PostgreSQL or MySQL
    wording, as an MLflow server relays it)."""
    text = str(err).lower()
    return any(s in text for s in ("unique constraint", "duplicate key", "duplicate entry"))


class TrialRun(Callback):
    """One MLflow run; as a training callback it logs each epoch's metrics with step=epoch.

    Args:
        tracker: the :class:`~cifar_hpo.tracking.Tracker` that made the run (its ``client``
            and ``tracking_uri`` are used).
        run_id: the MLflow run.
        macs: forward MACs per image of the run's model (adds ``train_flops`` per epoch).
        system_metrics: sample MLflow system metrics into the run until :meth:`end`.
    """

    def __init__(
        self,
        tracker,
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
        ts = now_ms()
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
        ts = now_ms()
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
        ts, step = now_ms(), len(result.history)
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
        inputs = [DatasetInput(entity, [InputTag(k, v) for k, v in tags.items()])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except Exception as err:
            # Workers of one study starting together insert the experiment's one dataset row at
            # the same moment; the store's unique key lets one win and refuses the others. The
            # row exists now, so a second call links it instead of failing the trial.
            if not _unique_key_conflict(err):
                raise
            self.client.log_inputs(self.run_id, inputs)

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
        """Log the trained model as an MLflow 3 LoggedModel linked to this run
        (:func:`~cifar_hpo.tracking.models.log_logged_model`); returns the model id."""
        return log_logged_model(self.client, self.run_id, result, mean, std)

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
            tags = {OPTUNA_STATE_TAG: outcome.trial_state} if self.is_trial else {}
            if reason:
                tags[REASON_TAG] = reason
            self.set_tags(tags)
        finally:
            self.client.set_terminated(self.run_id, status=outcome.run_status)


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
