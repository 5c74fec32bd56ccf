"""The project's error types, in one place. Every message is one line that names the bad value
and what is allowed; the CLI prints it as ``error: ...`` and exits with status 2.

Every type derives from :class:`CifarHpoError` (a ``ValueError``), so a caller can catch all of
them at once. This module imports nothing of the project: every layer may raise these.
"""

from __future__ import annotations


class CifarHpoError(ValueError):
    """Base of the project's errors. The message is one line."""


class ConfigError(CifarHpoError):
    """A configuration value or key is invalid. The message names key and value."""


class SweepSpecError(ConfigError):
    """A sweep file, study name or storage is invalid. The message names the file, key and
    problem."""


class DatasetError(CifarHpoError):
    """A dataset is missing, malformed or inconsistent."""


class CheckpointError(CifarHpoError):
    """A checkpoint is missing, truncated, not ours or unsafe."""


class UnknownModelError(CifarHpoError):
    """``create_model``/``model_info`` got a name that is not registered."""


class WorkerError(CifarHpoError):
    """Workers cannot run as asked (for example several on SQLite)."""


class TrackingError(CifarHpoError):
    """The MLflow tracking server cannot be reached (names the URI and what to check)."""


class UserError(CifarHpoError):
    """A command's arguments cannot be used together or point at nothing."""


class TrialFailed(Exception):
    """A trial could not produce a value (for example a non-finite loss). Not a user error: the
    study records it and goes on."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``str(err)``, or the exception's type name."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
