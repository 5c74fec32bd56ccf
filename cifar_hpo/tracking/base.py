"""What every tracker offers: :class:`RunTracker`, the protocol that the MLflow
:class:`~cifar_hpo.tracking.Tracker` and the no-op :class:`~cifar_hpo.tracking.NullTracker`
both implement, so the sweep, the objective and the CLI take either."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cifar_hpo.tracking.trial_run import TrialRun


@runtime_checkable
class RunTracker(Protocol):
    """A tracker: starts and reopens runs, keeps a study's parent run, reads run states and
    logged models back. ``tracking_uri`` is None for one that records nothing."""

    tracking_uri: str | None
    system_metrics: bool

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
        """A new run in ``experiment`` with ``tags`` (and ``config``'s params)."""
        ...

    def reopen_run(self, run_id: str, macs: int | None = None) -> TrialRun | None:
        """An existing run marked RUNNING again; None when there is none to reopen."""
        ...

    def parent_run(self, study, spec_summary: dict[str, Any], settle: float = 0.0) -> str:
        """The study's parent run id (created once)."""
        ...

    def finish_run(
        self,
        run_id: str,
        status: str = "FINISHED",
        metrics: dict[str, float] | None = None,
        files: str | Path | None = None,
    ) -> None:
        """Log ``metrics`` and ``files`` to a run, then set its status."""
        ...

    def run_status(self, run_id: str) -> str:
        """MLflow status of a run."""
        ...

    def running_trial_runs(self, study_name: str) -> list[tuple[str, int]]:
        """(run id, trial number) of the study's trial runs still RUNNING."""
        ...

    def live_models(self, experiment: str) -> list[Any]:
        """The experiment's logged models that are not deleted."""
        ...

    def champion_version(self, registered_name: str, alias: str = ...) -> Any | None:
        """The registry version holding ``alias``, or None."""
        ...
