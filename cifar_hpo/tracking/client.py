"""Where MLflow is and whether it answers: the tracking URI, the health checks that turn a dead
server or an unwritable store into one line within seconds, and the ``MlflowClient`` itself.

A tracking server that does not answer is reported as a
:class:`~cifar_hpo.errors.TrackingError` at once, not after MLflow's minutes of HTTP retries.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cifar_hpo.errors import TrackingError, first_line

#: what MLflow raises for a store, run, model or artifact it refuses or cannot find; callers
#: outside this package catch it under this name rather than importing MLflow
TrackingStoreError = MlflowException

#: MLflow's HTTP client retries a dead server for minutes by default, a sweep should not; and
#: its artifact progress bars would break the trial lines.
ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
SERVER_CHECK_TIMEOUT_S = 5.0


def apply_env_defaults() -> None:
    """Set :data:`ENV_DEFAULTS` where the environment does not already say otherwise."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else MLflow's default (``sqlite:///mlflow.db`` here)."""
    return mlflow.get_tracking_uri()


def make_client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for ``uri`` (None: :func:`default_tracking_uri`)."""
    return MlflowClient(uri)


def mlflow_version() -> str:
    """The installed MLflow version, for provenance records."""
    return mlflow.__version__


def is_tracking_error(err: BaseException) -> bool:
    """Whether ``err`` is MLflow refusing a request (:data:`TrackingStoreError`)."""
    return isinstance(err, MlflowException)


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
