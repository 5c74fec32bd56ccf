"""The names MLflow holds for this project: experiments, registered models, tags, roles,
metrics and the UI address, plus the two typed records every layer reads (:class:`RunRecord`,
:class:`RunOutcome`). Nothing here talks to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

#: tags of every experiment we create: the kind MLflow 3's experiment-kind selector writes for
#: "Machine learning". MLflow 3.17's UI does not pick its view from it: the URL's
#: ``?workflowType=machine_learning`` or the browser's remembered GenAI / Model training switch
#: does.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
CHAMPION_ALIAS = "champion"
MODEL_ID_TAG = "cifar_hpo.model_id"  # on a run and a registry version: the LoggedModel id
WEIGHTS_FILE = "state_dict.pt"  # in a LoggedModel's extra_files/: weights, config, class names
#: where runs from before LoggedModels kept their weights (an artifact of the run itself)
LEGACY_WEIGHTS_ARTIFACT = "weights/state_dict.pt"

# run tags
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: nests a run under another
ROLE_TAG = "cifar_hpo.role"
STUDY_TAG = "cifar_hpo.study"
TRIAL_TAG = "cifar_hpo.trial"
RECIPE_TAG = "cifar_hpo.recipe"
PHASE_TAG = "cifar_hpo.phase"
FIDELITY_TAG = "cifar_hpo.fidelity"
REASON_TAG = "cifar_hpo.reason"  # why a run did not complete (or was not trained)
OPTUNA_STATE_TAG = "optuna.state"  # a trial run's Optuna state
RUN_FOLDER_TAG = "cifar_hpo.run_folder"
#: run tags copied onto a logged model (find it by study and trial in the Models tab)
MODEL_TAG_KEYS = (STUDY_TAG, TRIAL_TAG, ROLE_TAG, RECIPE_TAG)


class Role(StrEnum):
    """What a run is, as its :data:`ROLE_TAG` holds it."""

    STUDY = "study"  # a study's parent run
    TRIAL = "trial"  # one Optuna trial
    TRAIN = "train"  # ``cifar-hpo train``
    REFIT = "refit"  # the best configuration retrained at full fidelity
    REFERENCE = "refit-reference"  # the reference recipe refit at the champion's epochs
    TABLE = "table"  # a README-table batch's parent run
    RECIPE = "recipe"  # one recipe of a README-table batch


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

TRAIN_EXPERIMENT = "train"
RUN_ID_FILE = "mlflow_run_id.txt"  # in a train run folder: the MLflow run it logs to

#: ``mlflow ui``'s default address, and the URL query that makes MLflow 3's UI show the
#: model-training views (runs table) instead of the GenAI ones
MLFLOW_UI_ADDRESS = "http://127.0.0.1:5000"
MLFLOW_VIEW = "workflowType=machine_learning"


def experiment_name(study: str) -> str:
    """MLflow experiment of a study."""
    return f"cifar-hpo/{study}"


def registered_model_name(study: str) -> str:
    """Model Registry name of a study's champion."""
    return f"cifar-hpo-{study}"


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
