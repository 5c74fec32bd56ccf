"""Options several commands share, as ``Annotated`` types (one help text each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CIFAR_HPO_DATA_DIR", help="Dataset folder [default: data]."),
]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="cifar10 or cifar100.")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="CIFAR_HPO_STORAGE",
        help="Optuna storage URL (postgresql://..., sqlite:///..., journal:FILE) "
        "[default: sqlite:///studies/optuna.db].",
    ),
]
SweepsDirOpt = Annotated[Path, typer.Option(help="Folder of study YAML files.")]
