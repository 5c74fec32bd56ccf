"""MLflow tracking for studies, trials and single runs: every MLflow call of the project.

Layout: one experiment per study (``cifar-hpo/<study>``); one parent run per study (its id is
kept in the Optuna study's user attributes so every worker nests under it); one nested run per
trial named ``trial-<number>`` with params (dotted config names, model defaults resolved),
per-epoch metrics (step = epoch), final test metrics, artifacts, the dataset as a run input and,
for the study's top-k trials, an MLflow 3 LoggedModel (``pt2``) linked to the run and its final
metrics. The champion is registered as ``cifar-hpo-<study>`` and carries the ``champion`` alias.
``cifar-hpo train`` logs the same run layout to the experiment ``train``.

The tracking URI is MLflow's own default (``sqlite:///mlflow.db`` in the working folder with
artifacts in ``mlruns/``) unless ``MLFLOW_TRACKING_URI`` or an explicit URI says otherwise.

Modules: :mod:`.schema` (names, tags, roles, records), :mod:`.client` (URI, health checks,
the client), :mod:`.runs` (:class:`Tracker`), :mod:`.trial_run` (:class:`TrialRun`),
:mod:`.null` (trackers that record nothing), :mod:`.models` (LoggedModels, registry, weights),
:mod:`.lifecycle` (:func:`tracked_run`: one start -> fill -> end for every kind of run),
:mod:`.base` (the :class:`RunTracker` protocol), :mod:`.train` (``cifar-hpo train``).
Import from this package; the modules are its layout.
"""

from cifar_hpo.record import PARENT_RUN_ATTR
from cifar_hpo.tracking.base import RunTracker
from cifar_hpo.tracking.client import (
    ENV_DEFAULTS,
    SERVER_CHECK_TIMEOUT_S,
    TrackingStoreError,
    check_local_store,
    check_tracking_server,
    default_tracking_uri,
    is_tracking_error,
    make_client,
    mlflow_version,
    tracking_failure,
)
from cifar_hpo.tracking.lifecycle import (
    RunSpec,
    TrackedRun,
    failure_reason,
    open_run,
    tracked_run,
    trial_spec,
)
from cifar_hpo.tracking.null import NullRun, NullTracker
from cifar_hpo.tracking.runs import Tracker, resolved_params
from cifar_hpo.tracking.schema import (
    CHAMPION_ALIAS,
    EPOCH_METRICS,
    EXPERIMENT_TAGS,
    FIDELITY_TAG,
    LEGACY_WEIGHTS_ARTIFACT,
    MLFLOW_UI_ADDRESS,
    MLFLOW_VIEW,
    MODEL_ID_TAG,
    MODEL_TAG_KEYS,
    OPTUNA_STATE_TAG,
    PARENT_RUN_TAG,
    PHASE_TAG,
    REASON_TAG,
    RECIPE_TAG,
    ROLE_TAG,
    RUN_FOLDER_TAG,
    RUN_ID_FILE,
    STUDY_TAG,
    TRAIN_EXPERIMENT,
    TRIAL_TAG,
    WEIGHTS_FILE,
    Role,
    RunOutcome,
    RunRecord,
    experiment_name,
    registered_model_name,
)
from cifar_hpo.tracking.train import tracked_train
from cifar_hpo.tracking.trial_run import TrialRun

__all__ = [
    "CHAMPION_ALIAS",
    "ENV_DEFAULTS",
    "EPOCH_METRICS",
    "EXPERIMENT_TAGS",
    "FIDELITY_TAG",
    "LEGACY_WEIGHTS_ARTIFACT",
    "MLFLOW_UI_ADDRESS",
    "MLFLOW_VIEW",
    "MODEL_ID_TAG",
    "MODEL_TAG_KEYS",
    "OPTUNA_STATE_TAG",
    "PARENT_RUN_ATTR",
    "PARENT_RUN_TAG",
    "PHASE_TAG",
    "REASON_TAG",
    "RECIPE_TAG",
    "ROLE_TAG",
    "RUN_FOLDER_TAG",
    "RUN_ID_FILE",
    "SERVER_CHECK_TIMEOUT_S",
    "STUDY_TAG",
    "TRAIN_EXPERIMENT",
    "TRIAL_TAG",
    "WEIGHTS_FILE",
    "NullRun",
    "NullTracker",
    "Role",
    "RunOutcome",
    "RunRecord",
    "RunSpec",
    "RunTracker",
    "TrackedRun",
    "Tracker",
    "TrackingStoreError",
    "TrialRun",
    "check_local_store",
    "check_tracking_server",
    "default_tracking_uri",
    "experiment_name",
    "failure_reason",
    "open_run",
    "is_tracking_error",
    "make_client",
    "mlflow_version",
    "registered_model_name",
    "resolved_params",
    "tracked_run",
    "tracked_train",
    "tracking_failure",
    "trial_spec",
]
