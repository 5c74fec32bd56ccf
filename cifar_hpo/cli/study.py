"""``studies``, ``best``, ``compare`` and ``predict``: what stored studies found, and using it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import friendly_errors
from cifar_hpo.cli.options import DataDirOpt, StorageOpt
from cifar_hpo.errors import UserError


@friendly_errors
def studies_cmd(
    storage: StorageOpt = None,
    study: Annotated[
        str | None,
        typer.Option(help="Show this study's leaderboard: its best trials, ranked."),
    ] = None,
    top: Annotated[
        int | None, typer.Option(metavar="N", help="Leaderboard rows, >= 1 [default: 10].")
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Rank by this objective (e.g. val_acc) or numeric trial attribute (test_acc, "
            "seconds, epochs_run, macs, ...) [default: the study's first objective].",
        ),
    ] = None,
    ascending: Annotated[
        bool | None,
        typer.Option(
            "--ascending/--descending",
            help="Order of --sort [default: best first for an objective, largest first otherwise].",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Show only this parameter (repeatable) [default: all]."),
    ] = None,
) -> None:
    """List stored studies with trial counts per state and the best value; with --study, that
    study's leaderboard (single- or multi-objective; infeasible trials marked)."""
    from cifar_hpo.sweep.storage import make_storage

    store = make_storage(storage)
    if study is None:
        given = [
            f"--{n}"
            for n, v in (("top", top), ("sort", sort), ("param", param))
            if v not in (None, [], ())
        ]
        if given or ascending is not None:
            raise UserError(f"{', '.join(given) or '--ascending/--descending'} needs --study S")
        render.study_list(study_rows(store))
        return
    from cifar_hpo.sweep.leaderboard import leaderboard
    from cifar_hpo.sweep.storage import load_stored_study

    board = leaderboard(
        load_stored_study(study, store),
        sort=sort,
        top=10 if top is None else top,
        descending=None if ascending is None else not ascending,
        params=param,
    )
    render.leaderboard(board)


def study_rows(store) -> list[tuple[str, dict[str, int], tuple[str, str]]]:
    """(name, trial counts per state, (best value, best trial)) of every study in ``store``,
    by name; a multi-objective study has no single best: its Pareto front's trials instead."""
    import optuna

    from cifar_hpo.sweep.report import best_trial, state_counts

    rows = []
    for summary in sorted(optuna.get_all_study_summaries(store), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        counts = state_counts(study)
        if len(study.directions) > 1:
            front = sorted(t.number for t in study.best_trials) if counts["COMPLETE"] else []
            best_cells = (f"{len(front)} on the Pareto front", ", ".join(map(str, front)) or "-")
        else:
            best = best_trial(study)
            best_cells = (f"{best.value:.4f}", str(best.number)) if best else ("-", "-")
        rows.append((summary.study_name, counts, best_cells))
    return rows


@friendly_errors
def best_cmd(
    study: Annotated[str, typer.Option(help="Study name.")],
    storage: StorageOpt = None,
    export: Annotated[
        Path | None, typer.Option(help="Write the chosen model as one self-contained file.")
    ] = None,
    trial: Annotated[
        int | None, typer.Option(help="Show/export this trial instead of the champion.")
    ] = None,
    max_params: Annotated[
        float | None,
        typer.Option(help="The best feasible trial with at most this many parameters."),
    ] = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(help="The best feasible trial with at most this batch-1 CPU latency (ms)."),
    ] = None,
) -> None:
    """Show the champion (value, params, MLflow run, registry version), or the trial a rule
    picks; the Pareto front of a multi-objective study; optionally export the model."""
    from cifar_hpo.sweep.best import export_best, find_best, load_existing_study
    from cifar_hpo.sweep.ranking import front_rows
    from cifar_hpo.sweep.spec import LimitSpec

    if trial is not None and (max_params is not None or max_latency_ms is not None):
        raise UserError("give --trial N or --max-params/--max-latency-ms, not both")
    limits = {}
    if max_params is not None:
        limits["params"] = LimitSpec(max=max_params)
    if max_latency_ms is not None:
        limits["latency_ms"] = LimitSpec(max=max_latency_ms)
    optuna_study = load_existing_study(study, storage)
    if len(optuna_study.directions) > 1:
        render.pareto_front(study, front_rows(optuna_study))
    best = find_best(study, storage, trial=trial, limits=limits or None)
    metric = (optuna_study.metric_names or ["value"])[0]
    render.best(study, best, metric, chosen=trial is not None or bool(limits))
    if export is not None:
        render.exported(export_best(best, export))


@friendly_errors
def compare_cmd(
    champion: Annotated[
        str, typer.Argument(help="Reference: run id, trial number or alias (e.g. champion).")
    ],
    challenger: Annotated[str, typer.Argument(help="Challenger: run id, trial number or alias.")],
    study: Annotated[
        str | None,
        typer.Option(help="Study of trial numbers and aliases (registered cifar-hpo-<study>)."),
    ] = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    top: Annotated[int, typer.Option(min=0, help="Disagreeing images in the grid.")] = 16,
    device: Annotated[str, typer.Option(help="Device for the predictions.")] = "auto",
    latency_repeats: Annotated[
        int, typer.Option(min=0, help="Timed batch-1 CPU calls per model (0: no latency).")
    ] = 50,
    log: Annotated[
        bool, typer.Option(help="Log compare/<champion>/ artifacts to the challenger's run.")
    ] = True,
) -> None:
    """Champion vs challenger: per-class P/R/F1 deltas, confusion difference, disagreements,
    params/MACs/latency; logged to the challenger's run under compare/<champion>/."""
    from cifar_hpo.sweep.compare import compare_runs

    with render.console.status("comparing ..."):
        cmp = compare_runs(
            champion,
            challenger,
            study=study,
            storage=storage,
            data_dir=data_dir,
            top_n=top,
            device=device,
            latency_repeats=latency_repeats,
            log=log,
        )
    render.comparison(cmp)


@friendly_errors
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Exported model file (cifar-hpo best --export).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    top_k: Annotated[int, typer.Option(min=1, help="Also show the top-k classes.")] = 1,
) -> None:
    """Classify images of any size and mode (resized to 32x32 RGB): class and confidence."""
    from cifar_hpo.predict import predict_files

    render.predictions(predict_files(model, paths, top_k=max(top_k, 1)), top_k)
