"""``sweep``: run or resume an Optuna study, here or in local worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import err_console, friendly_errors, interrupt_on_sigterm
from cifar_hpo.cli.options import DataDirOpt, StorageOpt, SweepsDirOpt
from cifar_hpo.errors import UserError
from cifar_hpo.record import TrialRecord


@friendly_errors
def sweep_cmd(
    study: Annotated[str, typer.Option(help="Study name: sweeps/<study>.yaml.")],
    trials: Annotated[
        str | None,
        typer.Option(metavar="N", help="Trials to add (shared out among --workers), >= 1."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after S seconds.")
    ] = None,
    storage: StorageOpt = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (default: the spec's).")] = None,
    sweeps_dir: SweepsDirOpt = Path("sweeps"),
    data_dir: DataDirOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override the base config of every trial.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            help="Local worker processes on this study (needs --storage journal:FILE or "
            "postgresql://...; more machines: run this command on each).",
        ),
    ] = 1,
    budget: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Time for the whole study on this machine (90s, 45m, 2h): planned from "
            "measured speed, then the best configuration is refit at full fidelity as the "
            "champion. Re-running continues with the budget left.",
        ),
    ] = None,
    allow_space_change: Annotated[
        bool,
        typer.Option(
            "--allow-space-change",
            help="Continue an existing study although its search space changed.",
        ),
    ] = False,
) -> None:
    """Run (or resume) an Optuna study; every trial is a nested MLflow run.

    Several processes or machines may run this at once on one study with a shared --storage.
    """
    from cifar_hpo.config import parse_overrides
    from cifar_hpo.sweep.budget import parse_duration
    from cifar_hpo.sweep.report import best_trial, state_counts
    from cifar_hpo.tracking import Tracker, experiment_name

    trials = _trial_count(trials)
    if workers < 1:  # checked here, not by click: one line, not Typer's box
        raise UserError(f"--workers {workers}: expected 1 or more worker processes")
    budget_s = parse_duration(budget) if budget is not None else None
    if timeout is not None and not timeout > 0:
        raise UserError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
    # MLflow's client prints a "View run" URL for every run it ends on a tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    outcome = _run(
        study,
        trials,
        workers,
        timeout=timeout,
        storage=storage,
        seed=seed,
        sweeps_dir=sweeps_dir,
        data_dir=data_dir,
        overrides=parse_overrides(set_ or []),
        progress=progress,
        allow_space_change=allow_space_change,
        budget_s=budget_s,
    )
    render.sweep_summary(outcome, study, state_counts(outcome.study), best_trial(outcome.study))
    url = Tracker().runs_table_url(experiment_name(study))
    render.runs_url("MLflow parent run", outcome.parent_run_id, url)
    _exit_status(outcome)


def _run(
    study,
    trials,
    workers,
    *,
    timeout,
    storage,
    seed,
    sweeps_dir,
    data_dir,
    overrides,
    progress,
    allow_space_change,
    budget_s,
):
    """The study in this process, or shared out among ``workers`` local processes."""
    from cifar_hpo.sweep.runner import run_sweep
    from cifar_hpo.sweep.workers import require_shared_storage, run_sweep_workers

    console = render.console
    require_shared_storage(storage, workers, study)
    if workers > 1:
        outcome = run_sweep_workers(
            study,
            trials,
            workers,
            timeout=timeout,
            storage=storage,
            seed=seed,
            sweeps_dir=sweeps_dir,
            data_dir=data_dir,
            overrides=overrides,
            console=console,
            allow_space_change=allow_space_change,
            budget_s=budget_s,
        )
    else:
        interrupt_on_sigterm()
        outcome = run_sweep(
            study,
            trials,
            timeout=timeout,
            storage=storage,
            seed=seed,
            sweeps_dir=sweeps_dir,
            data_dir=data_dir,
            overrides=overrides,
            console=console,
            show_progress=progress,
            allow_space_change=allow_space_change,
            budget_s=budget_s,
        )
    return outcome


def _exit_status(outcome) -> None:
    """Exit 130 when interrupted, 1 when a worker or every new trial failed (saying why)."""
    if outcome.interrupted:
        err_console.print("interrupted: the running trial was recorded; re-run to continue")
        raise typer.Exit(130)
    if outcome.failed_workers:
        codes = ", ".join(f"w{i} exited {code}" for i, code in outcome.failed_workers)
        err_console.print(
            f"[bold red]error:[/] {codes} (see its lines above); re-run to continue the study",
            highlight=False,
        )
        raise typer.Exit(1)
    failed = all_new_trials_failed(outcome.study, outcome.new_trials)
    if failed:
        err_console.print(
            f"[bold red]error:[/] all {failed[0]} new trials failed: {'; '.join(failed[1])}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _trial_count(text: str | None) -> int | None:
    """``--trials`` as an int >= 1 (parsed here, so that a bad value gets one line)."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"--trials must be a whole number >= 1, got {text!r}")
    return value


def all_new_trials_failed(study, numbers: list[int]) -> tuple[int, list[str]] | None:
    """``(count, distinct fail reasons)`` when every trial in ``numbers`` ended FAIL, else
    None (also when no trial ran)."""
    from optuna.trial import TrialState

    wanted = set(numbers)
    new = [t for t in study.get_trials(deepcopy=False) if t.number in wanted]
    if not new or any(t.state != TrialState.FAIL for t in new):
        return None
    reasons = {TrialRecord(t).fail_reason or "see the trial's MLflow run" for t in new}
    return len(new), sorted(reasons)
