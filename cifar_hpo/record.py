"""The study record: every Optuna user attribute cifar-hpo reads or writes, in one place.

Optuna stores a study's and each trial's user attributes as untyped JSON. Every key lives here
(``tests/test_architecture.py`` refuses a key defined or spelled as a string elsewhere), and
:class:`StudyRecord` / :class:`TrialRecord` read them with their types and defaults. This module
imports nothing of the project (and not Optuna): any layer may use it on an ``optuna.Study`` or
``FrozenTrial`` (anything with ``user_attrs``; writers need ``set_user_attr``).
"""

from __future__ import annotations

from typing import Any

# ----------------------------------------------------------------------------- study keys
#: the search space the study was created with (JSON of the spec's ``space``)
SPACE_ATTR = "search_space"
#: {"total_s": budget in seconds, "used_s": seconds spent so far}
BUDGET_ATTR = "budget"
#: the registry champion: {"trial", "version", "model_id", "value"}
CHAMPION_ATTR = "champion"
#: the champion's refit: {"trial", "run_id", "model_id", "epochs", "val_acc", "test_acc",
#: "search_value", "seconds", "seed", "promoted"}
REFIT_ATTR = "refit"
#: the reference recipe's refit, same keys as ``refit``
REFERENCE_REFIT_ATTR = "reference_refit"
#: the finalists' race (arms, per-seed test accuracies, comparison, summary)
RACE_ATTR = "race"
#: the study's MLflow parent run id (also set on trials as the run they nest under)
PARENT_RUN_ATTR = "mlflow_parent_run_id"

# ----------------------------------------------------------------------------- trial keys
#: the trial's MLflow run id
RUN_ID_ATTR = "mlflow_run_id"
#: the trial's MLflow LoggedModel, while it is among the top k
MODEL_ID_ATTR = "mlflow_model_id"
#: one line: why the trial failed
FAIL_REASON_ATTR = "fail_reason"
#: {"host", "pid", "started", "trial"}: who runs the trial
WORKER_ATTR = "worker"
#: a trial ended before training by a config-only constraint (the constraint's text)
INFEASIBLE_ATTR = "infeasible"
#: {"phase": "search", "mechanism", "epochs", "train_fraction"} of the trial
FIDELITY_ATTR = "fidelity"
#: median training images/s of the trial's epochs (what the refit plans with)
TRAIN_SPEED_ATTR = "train_images_per_sec"
#: {measure name: value} (see :mod:`cifar_hpo.sweep.objective`)
MEASURES_ATTR = "measures"
#: multiply-accumulates per 32x32 image of the trial's model
MACS_ATTR = "macs"
#: the epoch at which the pruner stopped the trial
PRUNED_AT_ATTR = "pruned_at_epoch"
#: training images seen and epochs run (fractional), wall seconds of the trial
IMAGES_SEEN_ATTR = "images_seen"
EPOCHS_RUN_ATTR = "epochs_run"
SECONDS_ATTR = "seconds"
#: {"trial": number, "epoch": epoch}: the failed trial this retry continued from
RESUMED_FROM_ATTR = "resumed_from"
#: test accuracy (fraction) and macro F1 of the trial's model, where it was tested
TEST_ACC_ATTR = "test_acc"
TEST_F1_ATTR = "test_f1_macro"


class _Field:
    """A record attribute read from ``attrs[key]``: dict-valued fields read as a copy (``{}``
    when absent or not a dict), others as stored (``None`` when absent)."""

    def __init__(self, key: str, is_dict: bool = False):
        self.key, self.is_dict = key, is_dict

    def __set_name__(self, owner, name: str) -> None:
        self.__doc__ = f"user attribute ``{self.key}``"

    def __get__(self, record, owner=None):
        if record is None:
            return self
        value = record.attrs.get(self.key)
        if self.is_dict:
            return dict(value) if isinstance(value, dict) else {}
        return value


class StudyRecord:
    """Typed read access to a study's attributes: ``StudyRecord(study).refit`` is a dict
    (empty when absent), never ``None``."""

    champion = _Field(CHAMPION_ATTR, is_dict=True)  # {"trial", "version", "model_id", "value"}
    refit = _Field(REFIT_ATTR, is_dict=True)
    reference_refit = _Field(REFERENCE_REFIT_ATTR, is_dict=True)
    race = _Field(RACE_ATTR, is_dict=True)
    budget = _Field(BUDGET_ATTR, is_dict=True)  # {"total_s", "used_s"} in seconds
    parent_run_id = _Field(PARENT_RUN_ATTR)

    def __init__(self, study: Any):
        self.attrs: dict[str, Any] = dict(study.user_attrs)

    def champion_version(self, trial: int | None) -> Any:
        """The registry version of trial number ``trial``'s model when it is the champion,
        else None (the registry holds another trial's model, or none)."""
        champion = self.champion
        if trial is None or champion.get("trial") != trial:
            return None
        return champion.get("version")


class TrialRecord:
    """Typed read access to a trial's attributes (an ``optuna.trial.FrozenTrial``)."""

    measures = _Field(MEASURES_ATTR, is_dict=True)  # {measure name: value}
    test_acc = _Field(TEST_ACC_ATTR)  # fraction in [0, 1], where the trial was tested
    macs = _Field(MACS_ATTR)  # per 32x32 image
    epochs_run = _Field(EPOCHS_RUN_ATTR)  # fractional epochs
    run_id = _Field(RUN_ID_ATTR)
    fail_reason = _Field(FAIL_REASON_ATTR)  # one line, on a FAIL trial

    def __init__(self, trial: Any):
        self.attrs: dict[str, Any] = dict(trial.user_attrs)
