"""The ``cifar-hpo`` command line (Typer): :data:`app` and its commands.

Each command lives in a module of its kind (:mod:`~cifar_hpo.cli.train`,
:mod:`~cifar_hpo.cli.sweep`, :mod:`~cifar_hpo.cli.study`, :mod:`~cifar_hpo.cli.serve`,
:mod:`~cifar_hpo.cli.reproduce`, :mod:`~cifar_hpo.cli.catalog`); it parses, calls one function
and hands the result to :mod:`~cifar_hpo.cli.render`, which prints every table. Errors are
reported by :mod:`~cifar_hpo.cli.boundary`.
"""

from __future__ import annotations

import typer

from cifar_hpo.cli import catalog, reproduce, serve, study, sweep, train
from cifar_hpo.cli.boundary import (  # noqa: F401 (re-exported)
    DEBUG_ENV,
    HARMLESS_WARNINGS,
    err_console,
    friendly_errors,
    interrupt_on_sigterm,
)
from cifar_hpo.cli.sweep import all_new_trials_failed  # noqa: F401 (re-exported)
from cifar_hpo.cli.train import build_train_config  # noqa: F401 (re-exported)

app = typer.Typer(
    help="Hyperparameter sweeps and experiment tracking for CNN classifiers on CIFAR-10/100.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.callback()
def _process_setup() -> None:
    """Hyperparameter sweeps and experiment tracking for CNN classifiers on CIFAR-10/100."""
    from cifar_hpo.device import tune_malloc

    # Keep freed activation buffers in glibc's heap: training re-faulted thousands of pages per
    # step otherwise (bench/throughput.py: ours 5,204 -> 5,859 images/s on seed000_cnn).
    tune_malloc()


# the order of `cifar-hpo --help`
data_app.command("import")(catalog.data_import)
data_app.command("info")(catalog.data_info)
app.command("models")(catalog.models_cmd)
app.command("train")(train.train_cmd)
app.command("lr-find")(train.lr_find_cmd)
app.command("sweep")(sweep.sweep_cmd)
app.command("studies")(study.studies_cmd)
app.command("dashboard")(serve.dashboard_cmd)
app.command("best")(study.best_cmd)
app.command("compare")(study.compare_cmd)
app.command("predict")(study.predict_cmd)
app.command("reproduce")(reproduce.reproduce_cmd)


def main() -> None:  # pragma: no cover - console entry
    """Console-script entry point."""
    app()
