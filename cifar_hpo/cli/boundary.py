"""The command line's boundary: which exceptions a command reports as one ``error: ...`` line
(exit status 2) and which keep their traceback, the known-harmless library warnings silenced
while a command runs, and SIGTERM handled as Ctrl-C."""

from __future__ import annotations

import functools
import os
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from cifar_hpo.errors import CifarHpoError

err_console = Console(stderr=True)
#: set to 1 to see the traceback behind an ``error: ...`` line
DEBUG_ENV = "CIFAR_HPO_DEBUG"


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors a command reports as one line: the project's own, pydantic's (a config value),
    a user path the OS refused (``OSError`` naming a file) and MLflow's (a store or run the user
    named). Everything else is a bug and keeps its traceback."""
    from pydantic import ValidationError

    from cifar_hpo.tracking import TrackingStoreError

    return (CifarHpoError, ValidationError, OSError, TrackingStoreError)


def _one_line(err: BaseException) -> str | None:
    """``err`` as the line after ``error:``, or None when it is not a user error."""
    if isinstance(err, OSError):
        if not getattr(err, "filename", None):
            return None  # an OSError without a path is not about the user's input
        return f"{err.strerror}: {err.filename}"
    return str(err) or type(err).__name__


#: (message regex, why it is harmless): library warnings every sweep printed, silenced for the
#: command's duration only (tests and library users still see them)
HARMLESS_WARNINGS = (
    # TPESampler(multivariate=True, group=True): stable in use since Optuna 2.8
    (r"Argument ``(multivariate|group)`` is an experimental feature", "optuna TPE options"),
    # torch.export's pt2 packaging of CPU weights (LoggedModel); the file loads and scores the same
    (r"No complete tensor found in the group", "torch.export weights on the CPU"),
)


def friendly_errors(func):
    """Turn the user errors (:func:`_user_errors`) into ``error: ...`` on stderr and exit status
    2, and silence the known-harmless library warnings (``HARMLESS_WARNINGS``) while the command
    runs. Other exceptions are bugs and keep their traceback; ``CIFAR_HPO_DEBUG=1`` shows the
    traceback of user errors too."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                for pattern, _ in HARMLESS_WARNINGS:
                    warnings.filterwarnings("ignore", message=pattern)
                return func(*args, **kwargs)
        except _user_errors() as err:
            message = _one_line(err)
            if message is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            err_console.print(
                f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a scheduler ending a job) behave like Ctrl-C, so that the
    command's ``KeyboardInterrupt`` handling marks its MLflow runs KILLED and its Optuna trial
    FAIL instead of leaving them RUNNING."""
    import signal

    def _sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _sigterm)
