"""One tracked-run lifecycle for every kind of run (train, trial, refit, reference, recipe,
table): :func:`tracked_run` starts the MLflow run a :class:`RunSpec` describes, the caller fills
it through the :class:`TrackedRun` it yields (dataset, training, result, model), and the run
always ends: COMPLETE when the block finishes, FAILED when training diverged or the block
raised, PRUNED for the spec's ``pruned`` exceptions, KILLED on Ctrl-C/SIGTERM. No path leaves
a run RUNNING.

    spec = RunSpec(Role.REFIT, experiment_name(study), "refit-trial-3", config, tags=...)
    with tracked_run(tracker, spec) as tracked:
        tracked.log_dataset(data)
        result = tracked.train(data)
        if tracked.record(result, data):  # False: diverged, the run is ended FAILED
            ...
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import DIVERGED, Result, make_splits
from cifar_hpo.errors import first_line
from cifar_hpo.tracking.base import RunTracker
from cifar_hpo.tracking.schema import (
    OPTUNA_STATE_TAG,
    PARENT_RUN_TAG,
    ROLE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    Role,
    RunOutcome,
    experiment_name,
)
from cifar_hpo.tracking.trial_run import TrialRun

INTERRUPTED_REASON = "interrupted (Ctrl-C/SIGTERM)"


@dataclass(frozen=True)
class RunSpec:
    """What one tracked run is, before it starts.

    Args:
        role: the run's kind (tag ``cifar_hpo.role``); a :data:`Role.TRIAL` run's end also
            tags its Optuna state.
        experiment: MLflow experiment name (created if missing).
        name: the run's name.
        config: the resolved training config (its params and provenance tags are logged);
            None for a run that trains nothing itself (a batch's parent run).
        tags: further run tags.
        parent_run_id: nest the run under this one.
        log_model: :meth:`TrackedRun.record` logs the trained model as a LoggedModel.
        before: training callbacks that see each epoch before the run logs it (checkpoints,
            meters).
        callbacks: training callbacks that see each epoch after the run logged it (a pruner,
            so the epoch a trial is pruned at is logged too; progress bars).
        macs: forward MACs per image of the model (adds ``macs`` and ``train_flops``).
        system_metrics: sample system metrics into the run (None: the tracker's setting).
        reopen: continue this existing run instead of starting one, when it still exists.
        pruned: exception types that end the run PRUNED rather than FAILED (the sweep passes
            ``optuna.TrialPruned``: this layer knows nothing of Optuna).
    """

    role: Role
    experiment: str
    name: str
    config: Any = None
    tags: Mapping[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    log_model: bool = False
    before: Sequence[Callback] = ()
    callbacks: Sequence[Callback] = ()
    macs: int | None = None
    system_metrics: bool | None = None
    reopen: str | None = None
    pruned: tuple[type[BaseException], ...] = ()

    def run_tags(self) -> dict[str, str]:
        """The tags the run starts with: ``tags``, the role and the parent run."""
        tags = {**self.tags, ROLE_TAG: str(self.role)}
        if self.parent_run_id:
            tags[PARENT_RUN_TAG] = self.parent_run_id
        return tags


def trial_spec(
    study_name: str,
    parent_run_id: str | None,
    trial_number: int,
    config,
    *,
    macs: int | None = None,
    tags: Mapping[str, str] | None = None,
    **more: Any,
) -> RunSpec:
    """The :class:`RunSpec` of a study's trial: run ``trial-<n>`` in the study's experiment,
    nested under its parent run, with ``tags`` besides the study, trial and Optuna state;
    ``more`` sets the other :class:`RunSpec` fields."""
    own = {STUDY_TAG: study_name, TRIAL_TAG: str(trial_number), OPTUNA_STATE_TAG: "RUNNING"}
    return RunSpec(
        Role.TRIAL,
        experiment_name(study_name),
        f"trial-{trial_number}",
        config,
        tags={**own, **(tags or {})},
        parent_run_id=parent_run_id,
        macs=macs,
        **more,
    )


def open_run(tracker: RunTracker, spec: RunSpec) -> tuple[TrialRun, bool]:
    """Start the run ``spec`` describes (or reopen ``spec.reopen``); returns (the run, whether
    it was reopened). The run is left RUNNING: :func:`tracked_run` is what ends it."""
    if spec.reopen:
        run = tracker.reopen_run(spec.reopen, macs=spec.macs)
        if run is not None:
            return run, True
    run = tracker.start_run(
        spec.experiment,
        spec.name,
        spec.run_tags(),
        spec.config,
        macs=spec.macs,
        system_metrics=spec.system_metrics,
    )
    run.is_trial = spec.role == Role.TRIAL
    return run, False


class TrackedRun:
    """The run inside a :func:`tracked_run` block: the MLflow run (``run``, a training
    callback) and the steps that fill it. ``model_id`` is the logged model, once logged."""

    def __init__(self, spec: RunSpec, run: TrialRun, reopened: bool = False):
        self.spec = spec
        self.run = run
        self.reopened = reopened
        self.model_id: str | None = None
        self.result_logged = False

    @property
    def run_id(self) -> str | None:
        """The MLflow run id (None for a tracker that records nothing)."""
        return self.run.run_id

    @property
    def ended(self) -> bool:
        """Whether the run has been ended already."""
        return self.run.ended

    def log_dataset(self, data, config=None):
        """Log ``data`` as the run's input with the split sizes of ``config`` (default the
        spec's); returns the splits (:func:`cifar_hpo.engine.make_splits`)."""
        splits = make_splits(config or self.spec.config, data)
        self.run.log_dataset(data, len(splits.train_idx), len(splits.val_idx))
        return splits

    def train(
        self,
        data,
        *,
        extra: Sequence[Callback] = (),
        trainer: Callable[..., Result] | None = None,
        **kwargs,
    ) -> Result:
        """Train the spec's config on ``data`` with the spec's callbacks around the run's own.

        Args:
            extra: callbacks made for this training only (a progress bar), after the spec's.
            trainer: the training function, called as ``trainer(config, data, callbacks,
                **kwargs)``; default :func:`cifar_hpo.engine.train`, looked up at each call
                (so a caller's own reference, or a patched engine, is the one used).
            kwargs: for the trainer: ``resume``, ``evaluate_test``.
        """
        if trainer is None:
            from cifar_hpo import engine

            trainer = engine.train
        callbacks = [*self.spec.before, self.run, *self.spec.callbacks, *extra]
        return trainer(self.spec.config, data, callbacks, **kwargs)

    def record(self, result: Result, data) -> bool:
        """Log ``result`` (final metrics and artifacts); a diverged run is ended FAILED with
        the engine's message and False returned; otherwise the model is logged when the spec
        says so, and True returned (the run stays open until the block ends)."""
        self.run.log_result(result)
        self.result_logged = True
        if result.status == DIVERGED:
            self.end(RunOutcome.FAILED, result.message)
            return False
        if self.spec.log_model:
            self.log_model(result, data)
        return True

    def log_model(self, result: Result, data) -> str | None:
        """Log ``result``'s model as a LoggedModel of this run; returns its id."""
        self.model_id = self.run.log_model(result, data.mean, data.std)
        return self.model_id

    def end(self, outcome: RunOutcome, reason: str = "") -> None:
        """End the run now with ``outcome`` (and the reason of a non-complete end); a later
        end, the block's own included, does nothing."""
        self.run.end(outcome, reason)

    def _fail(self, outcome: RunOutcome, reason: str) -> None:
        """End a run the block left by an exception, its partial artifacts logged first when
        no result was (a logging error must not hide the run's own outcome)."""
        if self.ended:
            return
        if not self.result_logged:
            try:
                self.run.log_partial()
            except Exception as err:  # noqa: BLE001
                warnings.warn(f"could not log the partial run {self.run_id}: {err}", stacklevel=3)
        self.end(outcome, reason)


@contextlib.contextmanager
def tracked_run(tracker: RunTracker, spec: RunSpec) -> Iterator[TrackedRun]:
    """Start the run ``spec`` describes, yield it to be filled, and end it: COMPLETE when the
    block finishes without having ended it, PRUNED for ``spec.pruned`` exceptions, KILLED on
    ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into one), FAILED with the error's first
    line for any other exception; the exception propagates. A run that raised before its
    result was logged also gets its config, history so far and plots
    (:meth:`TrialRun.log_partial`)."""
    run, reopened = open_run(tracker, spec)
    tracked = TrackedRun(spec, run, reopened)
    try:
        yield tracked
    except KeyboardInterrupt:
        tracked._fail(RunOutcome.INTERRUPTED, INTERRUPTED_REASON)
        raise
    except spec.pruned as err:
        tracked._fail(RunOutcome.PRUNED, str(err))
        raise
    except BaseException as err:
        tracked._fail(RunOutcome.FAILED, failure_reason(err))
        raise
    tracked.end(RunOutcome.COMPLETE)


def failure_reason(err: BaseException) -> str:
    """The reason a run records for ``err``: ``Type: first line of the message``."""
    return f"{type(err).__name__}: {first_line(err)}"
