"""An MLflow SQLite store with its tables made and nothing in them, to copy for each test."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path


def make_mlflow_tables(path: Path) -> Path | None:
    """Run MLflow's table creation and migrations on a new SQLite file ``path``.

    Returns:
        ``path``, or None where this MLflow version's (private) helpers differ: each test then
        makes its own tables, slower but the same.
    """
    try:
        import sqlalchemy
        from mlflow.store.db import utils

        logger = logging.getLogger(utils.__name__)
        level = logger.level
        logger.setLevel(logging.WARNING)  # its INFO lines would land in the first test's output
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        try:
            utils._initialize_tables(engine)
        finally:
            engine.dispose()
            logger.setLevel(level)
    except Exception:  # noqa: BLE001 - a speed-up only; without it tests make their own tables
        path.unlink(missing_ok=True)
        return None
    return path


def copy_mlflow_tables(tables: Path | None, store: Path) -> None:
    """Copy a :func:`make_mlflow_tables` file to ``store`` (nothing when there is none, or
    when ``store`` exists)."""
    if tables is not None and not store.exists():
        shutil.copyfile(tables, store)
