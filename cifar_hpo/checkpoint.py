"""Checkpoint files: one ``torch.save`` dict, always loaded with ``weights_only=True``."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from cifar_hpo.errors import CheckpointError  # noqa: F401 (re-exported)

CHECKPOINT_FORMAT = "cifar-hpo-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (temporary file, then rename) and return the path.

    Raises:
        CheckpointError: the folder cannot be created or written, or the disk is full (names
            the folder and "no space left"; the checkpoint already at ``path`` stays intact).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # leave no half-written temporary file behind
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC or _is_write_failure(err):
            raise CheckpointError(
                f"cannot write checkpoint {str(path)!r}: no space left in {str(path.parent)!r} "
                f"({_free_mb(path.parent)} MB free); "
                + ("the last good checkpoint is intact" if path.exists() else "none written yet")
            ) from None
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
            raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {reason}") from None
        raise
    return path


def _is_write_failure(err: BaseException) -> bool:
    # torch's zip writer reports a failed write (a full disk) as a RuntimeError from its C++
    # stream, e.g. "[enforce fail at inline_container.cc:672] . unexpected pos ..." or
    # "PytorchStreamWriter failed writing file data/0: file write failed"
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "inline_container" in text or "file write failed" in text
    )


def _free_mb(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 1e6:,.0f}"
    except OSError:
        return "?"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises:
        CheckpointError: missing file, truncated/corrupt file, a pickle that needs code to run
            (refused, never executed) or a file that is not a cifar-hpo checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch wraps the unpickler's own one-line reason in a long generic text (which even
        # suggests weights_only=False); report the reason itself, kept as the context
        inner = err.__context__ if isinstance(err.__context__, pickle.UnpicklingError) else err
        lines = str(inner).strip().splitlines()
        reason = lines[0].strip() if lines else "unsafe pickle"
        if "GLOBAL" in reason or "allowlisted" in reason:  # would import or call code
            raise CheckpointError(
                f"checkpoint {str(path)!r} was refused by weights_only loading: {reason}"
            ) from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated: {reason}; "
            "expected a checkpoint.pt written by cifar-hpo train"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(". This is an internal miniz error")[0]  # torch's boilerplate
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated: {first}; "
            "expected a checkpoint.pt written by cifar-hpo train"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a cifar-hpo checkpoint")
    return state
