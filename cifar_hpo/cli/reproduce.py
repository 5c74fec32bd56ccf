"""``reproduce``: retrain the source projects' recipes and rewrite the README table from MLflow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import err_console, friendly_errors, interrupt_on_sigterm
from cifar_hpo.cli.options import DataDirOpt, StorageOpt, SweepsDirOpt


@friendly_errors
def reproduce_cmd(
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Every recipe N epochs (schedules fitted to N).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="The source projects' own epoch counts (for a GPU).")
    ] = False,
    train_fraction: Annotated[
        float | None, typer.Option(help="Share of the training split for every recipe.")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Just this recipe (repeatable).")
    ] = None,
    readme: Annotated[Path, typer.Option(help="README with the table markers.")] = Path(
        "README.md"
    ),
    recipes: Annotated[Path, typer.Option(help="Recipes YAML.")] = Path("sweeps/recipes.yaml"),
    docs: Annotated[
        Path | None, typer.Option(help="Folder for the plots [default: docs/ beside README].")
    ] = None,
    storage: StorageOpt = None,
    sweeps_dir: SweepsDirOpt = Path("sweeps"),
    data_dir: DataDirOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override every recipe, e.g. device=cpu.")
    ] = None,
    table_only: Annotated[
        bool, typer.Option("--table-only", help="Rewrite from the latest batch; no training.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Retrain the source projects' recipes and the best baseline trial; rewrite the README
    table."""
    import shlex
    import sys

    from cifar_hpo.config import parse_overrides
    from cifar_hpo.reproduce import Budget, reproduce, write_table

    interrupt_on_sigterm()
    if table_only:
        outcome = write_table(readme=readme, docs_dir=docs)
    else:
        command = os.environ.get("CIFAR_HPO_COMMAND") or shlex.join(["cifar-hpo", *sys.argv[1:]])
        try:
            outcome = reproduce(
                Budget.from_options(epochs, full, train_fraction),
                recipes_file=recipes,
                readme=readme,
                docs_dir=docs,
                only=only or [],
                overrides=parse_overrides(set_ or []),
                data_dir=data_dir,
                storage=storage,
                sweeps_dir=sweeps_dir,
                command=command,
                console=render.console,
                show_progress=progress,
            )
        except KeyboardInterrupt:
            err_console.print("interrupted: the batch is marked KILLED; README left unchanged")
            raise typer.Exit(130) from None
    render.readme_table(outcome)
