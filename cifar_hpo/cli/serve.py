"""``dashboard``: optuna-dashboard over the stored studies."""

from __future__ import annotations

from typing import Annotated

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import friendly_errors
from cifar_hpo.cli.options import StorageOpt
from cifar_hpo.errors import UserError


@friendly_errors
def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).")] = 8080,
) -> None:
    """Serve optuna-dashboard (study history, importances, trials) for the stored studies;
    needs pip install 'cifar-hpo[dashboard]'. Ctrl-C stops it."""
    from cifar_hpo.sweep.dashboard import serve_dashboard

    if not 1 <= port <= 65535:  # checked here, not by click: one line, not Typer's box
        raise UserError(f"--port {port}: expected a TCP port from 1 to 65535")

    def ready(url: str) -> None:
        render.dashboard_ready(url, storage or "studies/optuna.db")

    try:
        serve_dashboard(storage, host=host, port=port, ready=ready)
    except KeyboardInterrupt:
        pass
