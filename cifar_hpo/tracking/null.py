"""The trackers that record nothing (benchmarks, ``cifar-hpo train --no-track``):
:class:`NullTracker` and the :class:`NullRun` it hands out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_hpo.engine import Result, TrainState
from cifar_hpo.tracking.schema import CHAMPION_ALIAS, RunOutcome
from cifar_hpo.tracking.trial_run import TrialRun


class NullRun(TrialRun):
    """A run that records nothing (:class:`NullTracker`): every method is a no-op."""

    def __init__(self) -> None:
        self.run_id = None
        self.macs = None
        self.ended = False
        self.is_trial = False

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


class NullTracker:
    """A tracker that records nothing (benchmarks, ``cifar-hpo train --no-track``): every
    method of :class:`~cifar_hpo.tracking.Tracker` the sweep, the objective and the CLI call,
    as a no-op."""

    tracking_uri = None
    system_metrics = False

    def start_trial(
        self,
        study_name: str,
        parent_run_id: str | None,
        trial_number: int,
        config,
        macs: int | None = None,
    ) -> TrialRun:
        """A :class:`NullRun`."""
        return NullRun()

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
        """A :class:`NullRun`."""
        return NullRun()

    def reopen_run(self, run_id: str, macs: int | None = None) -> TrialRun | None:
        """No run to reopen."""
        return None

    def parent_run(self, study, spec_summary: dict[str, Any], settle: float = 0.0) -> str:
        """No parent run: an empty id."""
        return ""

    def finish_run(
        self,
        run_id: str,
        status: str = "FINISHED",
        metrics: dict[str, float] | None = None,
        files: str | Path | None = None,
    ) -> None:
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

    def champion_version(self, registered_name: str, alias: str = CHAMPION_ALIAS) -> None:
        """No registry."""
        return None
