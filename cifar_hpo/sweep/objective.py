"""The Optuna objective: sample -> config -> train -> objective value(s).

Tracking and pruning plug in as training callbacks, so the same objective serves ``cifar-hpo
sweep`` (MLflow runs, checkpoints, the registry) and the benchmarks (``bench/pruning.py``,
``bench/tracking_overhead.py``) with a :class:`~cifar_hpo.tracking.NullTracker`.

Per trial the objective records, whatever the outcome (complete, pruned, failed), the compute it
used as trial user attributes: ``images_seen``, ``epochs_run``, ``seconds`` and ``macs`` (forward
multiply-accumulates per image of the trial's model). A completed trial that ranks among the
study's ``top_k_models`` logs its model; which models stay and which one is the registry's
``champion`` is decided after the trial is told (:mod:`cifar_hpo.sweep.champion`).

Objectives and constraints (spec ``objective`` / ``constraints``) are named measures
(:mod:`cifar_hpo.sweep.spec`): validation metrics, ``params``, ``macs``, ``latency_ms``,
``train_seconds``, ``train_flops`` and ``time_to_acc@X``. Every measured one is recorded in the
trial's ``measures`` user attribute. Constraints go to Optuna through ``trial.set_constraint``;
those known from the config alone (params, MACs) are checked before training, and a trial that
violates one ends COMPLETE at once, untrained (no epochs in its history, tag
``cifar_hpo.infeasible`` on its run), with the values of an untrained model: accuracy-like
metrics 0, ``val_loss`` ln(classes), training seconds and FLOPs 0, ``time_to_acc@X`` infinite
(it never gets there), latency measured on the untrained network (it depends only on the
architecture).

How each measure is computed: :mod:`cifar_hpo.sweep.measures`.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
from rich.progress import Progress

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.config import TrainConfig, with_overrides
from cifar_hpo.data import CifarData
from cifar_hpo.engine import Result, TrainState, train
from cifar_hpo.errors import CheckpointError, TrialFailed, first_line
from cifar_hpo.latency import measure_latency_ms
from cifar_hpo.models import create_model
from cifar_hpo.record import (  # noqa: F401 (re-exported)
    EPOCHS_RUN_ATTR,
    FIDELITY_ATTR,
    IMAGES_SEEN_ATTR,
    INFEASIBLE_ATTR,
    MACS_ATTR,
    PRUNED_AT_ATTR,
    RESUMED_FROM_ATTR,
    SECONDS_ATTR,
    TEST_ACC_ATTR,
    TEST_F1_ATTR,
    TRAIN_SPEED_ATTR,
)
from cifar_hpo.sweep.fidelity import COMPLETE
from cifar_hpo.sweep.measures import (
    ModelSizes,
    time_to_accuracy,
    trained_measures,
    untrained_measures,
)
from cifar_hpo.sweep.ranking import MEASURES_ATTR, rank_key, ranked_trials, rule_holds
from cifar_hpo.sweep.spec import (
    CONFIG_MEASURES,
    TIME_TO_ACC,
    VALIDATION_METRICS,
    SweepSpec,
    suggest,
)
from cifar_hpo.sweep.storage import (
    FAIL_REASON_ATTR,
    MODEL_ID_ATTR,
    RUN_ID_ATTR,
    WORKER_ATTR,
    trial_checkpoint_path,
    worker_identity,
)
from cifar_hpo.tracking import (
    FIDELITY_TAG,
    PHASE_TAG,
    NullTracker,
    RunOutcome,
    RunTracker,
    TrackedRun,
    tracked_run,
    tracking_failure,
    trial_spec,
)


class PruningCallback(Callback):
    """Reports ``metric`` each epoch (``trial.report(value, epoch)``) and raises
    ``optuna.TrialPruned`` when the study's pruner says so (``prune=False``: reports only, as
    the learning curve of a ``complete``-fidelity trial). Place it after the tracking callback,
    so the epoch a trial is pruned at is logged too."""

    def __init__(self, trial: optuna.Trial, metric: str, prune: bool = True):
        self.trial = trial
        self.metric = metric
        self.prune = prune

    def on_train_start(self, state: TrainState) -> None:
        # a trial resumed from a checkpoint reports the epochs it inherited (no pruning on them)
        for record in state.history:
            value = record.get(self.metric)
            if value is not None and math.isfinite(value):
                self.trial.report(value, record["epoch"])

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, record["epoch"])
        if self.prune and self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT_ATTR, record["epoch"])
            raise optuna.TrialPruned(
                f"pruned at epoch {record['epoch']} ({self.metric}={value:.4f})"
            )


class ComputeMeter(Callback):
    """Images processed and epochs run so far (the compute of a trial that ends early too),
    and the training images/s of each epoch (training time only, from the history)."""

    def __init__(self) -> None:
        self.images = 0
        self.epochs = 0
        self.speeds: list[float] = []

    def on_train_start(self, state: TrainState) -> None:
        self.images, self.epochs = state.images_seen, state.epoch

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        self.images, self.epochs = state.images_seen, int(record["epoch"])
        if record.get("images_per_sec"):
            self.speeds.append(float(record["images_per_sec"]))

    @property
    def images_per_sec(self) -> float | None:
        """Median training images/s over the epochs run (None before the first)."""
        return statistics.median(self.speeds) if self.speeds else None


class Objective:
    """Sample -> config -> train (tracked, pruned, checkpointed) -> validation metric.

    Args:
        spec: the study's spec (search space, objective, ``top_k_models``).
        data: the dataset every trial trains on.
        study_name: names the trial checkpoints (``studies/checkpoints/<study>/``).
        tracker: :class:`~cifar_hpo.tracking.Tracker` (one MLflow run per trial, nested under
            ``parent_run_id``) or :class:`~cifar_hpo.tracking.NullTracker` (records nothing).
        progress: a rich progress display to show each trial's epochs in, or None.
        overrides: dotted config values applied to the spec's base config before the trial's
            own parameters.
        checkpoints: write each epoch to ``studies/checkpoints/...`` so the retry of a trial
            whose worker was killed continues from there.
        evaluate_test: score the test split after a completed trial (never used for
            selection; off in the benchmarks).

    Calling it with an ``optuna.Trial`` returns the trial's objective value (a float), or
    one value per objective (a list) for a multi-objective spec.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial (its run is ended KILLED).
        TrialFailed: the run diverged or has no validation split (run ended FAILED).
        Exception: whatever training raised (run ended FAILED, reason recorded); the study's
            ``catch`` turns it into a FAIL trial.
    """

    def __init__(
        self,
        spec: SweepSpec,
        data: CifarData,
        study_name: str,
        *,
        tracker: RunTracker | None = None,
        parent_run_id: str | None = None,
        progress: Progress | None = None,
        overrides: dict[str, Any] | None = None,
        checkpoints: bool = True,
        evaluate_test: bool = True,
    ):
        self.spec = spec
        self.data = data
        self.study_name = study_name
        self.tracker = tracker if tracker is not None else NullTracker()
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.base = spec.base_config()
        if overrides:
            self.base = with_overrides(self.base, overrides)
        self.checkpoints = checkpoints
        self.evaluate_test = evaluate_test
        self.metric = spec.primary.metric
        self.maximize = spec.primary.direction == "maximize"
        # Optuna prunes one validation metric per epoch; several objectives cannot be pruned
        self.prunes = not spec.is_multi_objective and self.metric in VALIDATION_METRICS
        # ``complete`` search fidelity ranks trials where their schedules end: reported each
        # epoch, never pruned mid-schedule (a non-finite loss still ends a trial at once)
        self.mid_schedule = spec.budget.fidelity != COMPLETE
        names = {*spec.metric_names, *spec.constraints}
        for limits in spec.rules.values():
            names.update(limits)
        self.wants_latency = "latency_ms" in names
        self.sizes = ModelSizes()
        self.numbers: list[int] = []  # trials this process ran (other workers add theirs)

    def config_for(self, trial: optuna.Trial) -> TrainConfig:
        """The trial's config: the base config plus its sampled parameters."""
        return with_overrides(self.base, suggest(trial, self.spec))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            lost = tracking_failure(err, self.tracker.tracking_uri)
            if lost is not None:
                trial.set_user_attr(FAIL_REASON_ATTR, f"{type(lost).__name__}: {lost}")
                raise lost from None
            if FAIL_REASON_ATTR not in trial.user_attrs:  # failed before training started
                trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {first_line(err)}")
            raise

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        # first, so a worker that dies from here on leaves a trial others can recognize
        self.numbers.append(trial.number)
        trial.set_user_attr(WORKER_ATTR, {**worker_identity(), "trial": trial.number})
        config = self.config_for(trial)
        params, macs = self.sizes(config, self.data.num_classes)
        trial.set_user_attr(MACS_ATTR, macs)
        measures: dict[str, float] = {"params": float(params), "macs": float(macs)}
        fidelity = {
            "phase": "search",
            "mechanism": self.spec.budget.fidelity,
            "epochs": config.epochs,
            "train_fraction": config.data.train_fraction,
        }
        meter = ComputeMeter()
        checkpoint = trial_checkpoint_path(self.study_name, trial.number)
        # the run logs an epoch before the pruner may stop the trial at it
        before: list[Callback] = [Checkpointing(checkpoint)] if self.checkpoints else []
        pruner = PruningCallback(trial, self.metric, prune=self.mid_schedule)
        spec = trial_spec(
            self.study_name,
            self.parent_run_id,
            trial.number,
            config,
            macs=macs,
            tags={PHASE_TAG: "search", FIDELITY_TAG: json.dumps(fidelity)},
            before=(*before, meter),
            callbacks=(pruner,) if self.prunes else (),
            pruned=(optuna.TrialPruned,),
        )
        with tracked_run(self.tracker, spec) as tracked:
            if tracked.run_id:
                trial.set_user_attr(RUN_ID_ATTR, tracked.run_id)
            trial.set_user_attr(FIDELITY_ATTR, fidelity)
            broken = self._set_constraints(trial, measures, CONFIG_MEASURES)
            if broken:
                return self._end_untrained(trial, tracked, config, measures, broken)
            tracked.log_dataset(self.data)
            return self._train(trial, tracked, meter, checkpoint, measures)

    def _train(
        self,
        trial: optuna.Trial,
        tracked: TrackedRun,
        meter: ComputeMeter,
        checkpoint: Path,
        measures: dict[str, float],
    ) -> float | list[float]:
        """Train the trial's run (resumed from a killed worker's checkpoint when there is one),
        record its compute whatever the outcome, then its result (:meth:`_complete`)."""
        resume, origin = self._resume_state(trial, tracked.spec.config)
        bars = []
        if self.progress is not None:
            from cifar_hpo.progress import RichProgress

            bars.append(RichProgress(progress=self.progress, label=f"trial {trial.number}"))
        result = None
        t0 = time.perf_counter()
        try:
            result = tracked.train(
                self.data,
                extra=bars,
                trainer=train,  # this module's name for it, looked up now
                resume=resume,
                evaluate_test=self.evaluate_test,
            )
        except optuna.TrialPruned:
            raise  # the run ends PRUNED (the spec's ``pruned``)
        except Exception as err:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {err}")
            raise
        finally:
            trial.set_user_attr(IMAGES_SEEN_ATTR, meter.images)
            trial.set_user_attr(EPOCHS_RUN_ATTR, meter.epochs)
            trial.set_user_attr(SECONDS_ATTR, time.perf_counter() - t0)
            if meter.images_per_sec is not None:  # this machine's speed for this config
                trial.set_user_attr(TRAIN_SPEED_ATTR, meter.images_per_sec)
            for bar in bars:
                bar.close()
            if result is None:  # ended during training: its run ends with the exception
                _drop_checkpoints(checkpoint, origin)
        try:
            return self._complete(trial, tracked, result, measures)
        finally:
            # removed only once the trial is recorded: a worker killed before this point (no
            # finally runs) leaves its checkpoint for the retry
            _drop_checkpoints(checkpoint, origin)

    def _resume_state(self, trial: optuna.Trial, config) -> tuple[dict | None, Path | None]:
        """For a retry of a trial whose worker was killed: that trial's last epoch checkpoint,
        when this machine has it and it was written with the same config."""
        if not self.checkpoints:
            return None, None
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        original = frozen.system_attrs.get("failed_trial")
        if original is None:
            return None, None
        path = trial_checkpoint_path(self.study_name, int(original))
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            return None, None  # another machine's trial, or nothing written yet: start over
        if state.get("config") != config.to_dict():
            return None, path
        trial.set_user_attr(
            RESUMED_FROM_ATTR, {"trial": int(original), "epoch": int(state["epoch"])}
        )
        return state, path

    def _complete(
        self,
        trial: optuna.Trial,
        tracked: TrackedRun,
        result: Result,
        measures: dict[str, float],
    ) -> float | list[float]:
        """Record a trained trial: its result on the run, its measures, constraints and test
        metrics on the trial, its model when it ranks among those kept. The run ends COMPLETE
        when the tracked block ends; a diverged run or one without validation FAILED."""
        try:
            diverged = not tracked.record(result, self.data)
            if diverged or result.val is None:
                reason = result.message or "no validation split: set data.val_fraction > 0"
                trial.set_user_attr(FAIL_REASON_ATTR, reason)
                tracked.end(RunOutcome.FAILED, reason)
                raise TrialFailed(reason)
            measures.update(trained_measures(result, int(measures["macs"])))
            if self.wants_latency:
                measures["latency_ms"] = measure_latency_ms(result.model)
            values = self._values(measures, result.history)
            trial.set_user_attr(MEASURES_ATTR, measures)
            after = tuple(n for n in self.spec.constraints if n not in CONFIG_MEASURES)
            self._set_constraints(trial, measures, after)
            if result.test is not None:
                trial.set_user_attr(TEST_ACC_ATTR, result.test.metrics["acc"])
                trial.set_user_attr(TEST_F1_ATTR, result.test.metrics["f1_macro"])
            if self._keeps_model(trial, values, measures):
                model_id = tracked.log_model(result, self.data)
                if model_id:
                    trial.set_user_attr(MODEL_ID_ATTR, model_id)
            return values if self.spec.is_multi_objective else values[0]
        except TrialFailed:
            raise
        except BaseException as err:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {err}")
            raise  # the run ends FAILED (KILLED for Ctrl-C) with the tracked block

    def _values(self, measures: dict[str, float], history: list[dict[str, Any]]) -> list[float]:
        """One value per objective, from the trial's measures (``time_to_acc@X`` also
        recorded in ``measures``)."""
        values = []
        for name in self.spec.metric_names:
            if name.startswith(TIME_TO_ACC):
                target = float(name.removeprefix(TIME_TO_ACC))
                measures[name] = time_to_accuracy(history, target)
            values.append(float(measures[name]))
        return values

    def _set_constraints(
        self, trial: optuna.Trial, measures: dict[str, float], names: tuple[str, ...]
    ) -> list[str]:
        """``trial.set_constraint`` for the spec's constraints among ``names`` that are
        measured; returns the violated ones as text (``params 250,000 > max 200,000``)."""
        broken = []
        for name, limit in self.spec.constraints.items():
            if name not in names or name not in measures:
                continue
            value = measures[name]
            trial.set_constraint(name, limit.violation(value))
            if not limit.holds(value):
                broken.append(f"{name} {value:,.6g}: not {limit.describe(name)}")
        return broken

    def _end_untrained(
        self,
        trial: optuna.Trial,
        tracked: TrackedRun,
        config: TrainConfig,
        measures: dict[str, float],
        broken: list[str],
    ) -> float | list[float]:
        """A trial whose config violates a constraint: COMPLETE, infeasible, never trained."""
        reason = "; ".join(broken)
        measures.update(untrained_measures(self.data.num_classes))
        if self.wants_latency:
            model = create_model(config.model.name, self.data.num_classes, **config.model.hparams)
            measures["latency_ms"] = measure_latency_ms(model)
        values = self._values(measures, [])
        trial.set_user_attr(MEASURES_ATTR, measures)
        trial.set_user_attr(INFEASIBLE_ATTR, reason)
        trial.set_user_attr(EPOCHS_RUN_ATTR, 0)
        trial.set_user_attr(IMAGES_SEEN_ATTR, 0)
        tracked.run.set_tags({"cifar_hpo.infeasible": reason})
        tracked.end(RunOutcome.COMPLETE, f"not trained: {reason}")
        return values if self.spec.is_multi_objective else values[0]

    def _keeps_model(
        self, trial: optuna.Trial, values: list[float], measures: dict[str, float]
    ) -> bool:
        """Whether this trial's model is worth logging: it ranks among the study's
        ``top_k_models`` (:func:`~cifar_hpo.sweep.ranking.ranked_trials` order), or is the best
        so far within one of the spec's ``rules`` (which models stay is decided again once the
        trial is recorded)."""
        if not all(
            limit.holds(measures.get(name)) for name, limit in self.spec.constraints.items()
        ):
            return False
        study = trial.study
        mine = rank_key(study, values, trial.number)
        others = [t for t in ranked_trials(study, feasible_only=True) if t.number != trial.number]
        better = [t for t in others if rank_key(study, t.values, t.number) < mine]
        if len(better) < max(1, self.spec.top_k_models):
            return True
        for limits in self.spec.rules.values():
            within = all(limit.holds(measures.get(name)) for name, limit in limits.items())
            if within and not any(rule_holds(study, t, limits) for t in better):
                return True  # the best so far within this rule
        return False


def _drop_checkpoints(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)
