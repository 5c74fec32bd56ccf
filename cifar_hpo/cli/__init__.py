"""The ``cifar-hpo`` command line (Typer). Each command parses, calls one function, prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_hpo.cli.boundary import (  # noqa: F401 (re-exported)
    DEBUG_ENV,
    HARMLESS_WARNINGS,
    err_console,
    friendly_errors,
    interrupt_on_sigterm,
)
from cifar_hpo.errors import UserError
from cifar_hpo.record import StudyRecord, TrialRecord

app = typer.Typer(
    help="Hyperparameter sweeps and experiment tracking for CNN classifiers on CIFAR-10/100.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CIFAR_HPO_DATA_DIR", help="Dataset folder [default: data]."),
]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="cifar10 or cifar100.")]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _print_ui_hint(parent_run_id: str | None, study: str) -> None:
    from cifar_hpo.tracking import Tracker, experiment_name

    console.print(f"MLflow parent run: {parent_run_id}  (view with `mlflow ui`, then open")
    url = Tracker().runs_table_url(experiment_name(study))
    console.print(f"  {url})", highlight=False, soft_wrap=True)


@app.callback()
def _process_setup() -> None:
    """Hyperparameter sweeps and experiment tracking for CNN classifiers on CIFAR-10/100."""
    from cifar_hpo.device import tune_malloc

    # Keep freed activation buffers in glibc's heap: training re-faulted thousands of pages per
    # step otherwise (bench/throughput.py: ours 5,204 -> 5,859 images/s on seed000_cnn).
    tune_malloc()


# ----------------------------------------------------------------------------- data
@data_app.command("import")
@friendly_errors
def data_import(
    path: Annotated[Path, typer.Argument(help="torchvision folder, class folders or archive.")],
    name: Annotated[str | None, typer.Option(help="cifar10 or cifar100 [default: guess].")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Decode a dataset copy once into the uint8 cache every run reuses."""
    from cifar_hpo.data import dataset_info, import_dataset

    with console.status(f"decoding {path} ..."):
        data = import_dataset(path, name=name, data_dir=data_dir)
    info = dataset_info(data_dir, data.name)
    console.print(
        f"imported [bold]{data.name}[/]: {len(data.train_labels)} train, "
        f"{len(data.test_labels)} test images, {data.num_classes} classes -> {info.cache_path}"
    )


@data_app.command("info")
@friendly_errors
def data_info(dataset: DatasetOpt = "cifar10", data_dir: DataDirOpt = None) -> None:
    """Counts per class and split, source and cache path of an imported dataset."""
    from cifar_hpo.data import dataset_info

    info = dataset_info(data_dir, dataset)
    table = Table(title=f"{info.name}: {info.num_train} train / {info.num_test} test")
    table.add_column("label", justify="right")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for i, cls in enumerate(info.class_names):
        table.add_row(str(i), cls, str(info.train_counts[i]), str(info.test_counts[i]))
    console.print(table)
    console.print(f"source:   {info.source}")
    console.print(f"cache:    {info.cache_path} ({info.cache_bytes / 1e6:.1f} MB)")
    console.print(f"checksum: {info.checksum}")


# ----------------------------------------------------------------------------- models
@app.command("models")
@friendly_errors
def models_cmd(
    num_classes: Annotated[int, typer.Option(help="Classes for the counts.")] = 10,
) -> None:
    """List registered models with source, parameters and MACs per 32x32 image."""
    from cifar_hpo.models import count_macs, count_parameters, create_model, list_models, model_info

    table = Table(title=f"registered models ({num_classes} classes)")
    for col in ("name", "source", "params", "MACs/image", "hyperparameters"):
        table.add_column(col, justify="right" if col in ("params", "MACs/image") else "left")
    for name in list_models():
        info = model_info(name)
        model = create_model(name, num_classes)
        hp = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.hparams.items()
        )
        table.add_row(
            name, info.source, f"{count_parameters(model):,}", f"{count_macs(model) / 1e6:.1f}M", hp
        )
    console.print(table)


# ----------------------------------------------------------------------------- train
def build_train_config(
    config_file: Path | None,
    overrides: list[str],
    recipe: str | None = None,
    **options,
):
    """Recipe, then config file, then named options, then ``--set`` overrides (last wins)."""
    from cifar_hpo.config import load_config, parse_overrides, with_overrides

    named = {key: value for key, value in options.items() if value is not None}
    merged = {**named, **parse_overrides(overrides)}
    if recipe is None:
        return load_config(config_file, merged)
    from cifar_hpo.config import flatten, load_yaml
    from cifar_hpo.reproduce.recipes import recipe_config

    from_file = flatten(load_yaml(config_file)) if config_file else {}
    return with_overrides(recipe_config(recipe), {**from_file, **merged})


@app.command("train")
@friendly_errors
def train_cmd(
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Start from a recipe of sweeps/recipes.yaml by name (e.g. airbench94); "
            "the other options override it."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (see `models`).")] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Epochs to train (fractions allowed, e.g. 9.9).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (peak for OneCycle).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam, adamw or muon.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="onecycle, cosine, plateau, step or constant.")
    ] = None,
    augment: Annotated[str | None, typer.Option(help="Augment policy name.")] = None,
    strength: Annotated[float | None, typer.Option(help="augment.strength in [0, 1].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    dataset: Annotated[str | None, typer.Option(help="cifar10 or cifar100.")] = None,
    data_dir: DataDirOpt = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. --set optim.wd=5e-4.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for run folders.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option(help="Run folder or checkpoint.pt to continue exactly.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    track: Annotated[
        bool,
        typer.Option(help="Log the run to MLflow (experiment `train`); the run folder stays."),
    ] = True,
    system_metrics: Annotated[
        bool, typer.Option(help="MLflow system metrics (CPU, memory, GPU) for the run.")
    ] = True,
) -> None:
    """Train one model with rich progress; writes config, history, reports, plots, checkpoint
    to a run folder and logs the run to MLflow (experiment `train`) unless --no-track."""
    from cifar_hpo.callbacks import Checkpointing
    from cifar_hpo.checkpoint import load_checkpoint
    from cifar_hpo.config import TrainConfig
    from cifar_hpo.data import load_dataset
    from cifar_hpo.models import count_macs, create_model
    from cifar_hpo.progress import RichProgress
    from cifar_hpo.runs import CHECKPOINT, RunFolderWriter, new_run_dir
    from cifar_hpo.tracking import TRAIN_EXPERIMENT, NullTracker, Tracker, tracked_train

    ckpt = None
    if resume is not None:
        ckpt_path = resume / CHECKPOINT if resume.is_dir() else resume
        ckpt = load_checkpoint(ckpt_path)
        cfg = TrainConfig.from_dict(ckpt["config"])
        run_dir = ckpt_path.parent
    else:
        cfg = build_train_config(
            config,
            set_ or [],
            recipe,
            **{
                "model.name": model,
                "epochs": epochs,
                "optim.lr": lr,
                "batch_size": batch_size,
                "optim.name": optimizer,
                "schedule.name": scheduler,
                "augment.policy": augment,
                "augment.strength": strength,
                "seed": seed,
                "device": device,
                "data.dataset": dataset,
                "data.data_dir": str(data_dir) if data_dir else None,
            },
        )
        run_dir = None  # created once the data has loaded: a failed start leaves no folder
    tracker = Tracker(system_metrics=system_metrics) if track else NullTracker()
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir)
    macs = count_macs(create_model(cfg.model.name, data.num_classes, **cfg.model.hparams))
    if run_dir is None:
        run_dir = new_run_dir(out, cfg.model.name)
    console.print(f"run folder: [bold]{run_dir}[/]  model {cfg.model.name}  epochs {cfg.epochs}")
    callbacks = [RunFolderWriter(run_dir), Checkpointing(run_dir / CHECKPOINT)]
    if progress:
        callbacks.append(RichProgress(console))
    interrupt_on_sigterm()
    result, run_id = tracked_train(
        tracker, cfg, data, callbacks, run_folder=run_dir, resume=ckpt, macs=macs
    )
    _print_result(result)
    console.print(f"wrote {run_dir}")
    if run_id:
        console.print(f"MLflow run: {run_id}  (view with `mlflow ui`, then open")
        url = tracker.runs_table_url(TRAIN_EXPERIMENT)
        console.print(f"  {url})", highlight=False, soft_wrap=True)
    if result.status == "diverged":
        raise typer.Exit(1)


def _print_result(result) -> None:
    table = Table(title=f"{result.config.model.name}: {result.status}")
    table.add_column("metric")
    table.add_column("validation", justify="right")
    table.add_column("test", justify="right")
    for key in ("acc", "top3", "top5", "precision_macro", "recall_macro", "f1_macro", "loss"):
        val = f"{result.val.metrics[key]:.4f}" if result.val else "-"
        test = f"{result.test.metrics[key]:.4f}" if result.test else "-"
        table.add_row(key, val, test)
    console.print(table)
    if result.message:
        console.print(result.message)
    rate = result.images_seen / max(result.seconds, 1e-9)
    console.print(
        f"{len(result.history)} epochs, {result.seconds / 60:.1f} min, "
        f"{result.num_params:,} params, {rate:.0f} images/s overall"
    )


@app.command("lr-find")
@friendly_errors
def lr_find_cmd(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "airbench",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 512,
    start_lr: Annotated[float, typer.Option(help="First LR tried.")] = 1e-5,
    end_lr: Annotated[float, typer.Option(help="Last LR tried.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Batches in the test.")] = 100,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override.")] = None,
    data_dir: DataDirOpt = None,
    plot: Annotated[Path, typer.Option(help="Where to save the plot.")] = Path("lr_find.png"),
) -> None:
    """LR range test (seed 003): saves loss-vs-LR plot and suggests OneCycle's max LR."""
    from cifar_hpo.data import load_dataset
    from cifar_hpo.lr_find import lr_range_test
    from cifar_hpo.plots import plot_lr_finder

    cfg = build_train_config(
        config,
        set_ or [],
        **{
            "model.name": model,
            "batch_size": batch_size,
            "data.data_dir": str(data_dir) if data_dir else None,
        },
    )
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir)
    with console.status("running LR range test ..."):
        res = lr_range_test(cfg, data, start_lr, end_lr, steps)
    plot_lr_finder(res.lrs, res.losses, res.suggestion, plot)
    console.print(f"suggested max LR: [bold]{res.suggestion:.3g}[/]  (plot: {plot})")


# ----------------------------------------------------------------------------- sweeps
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="CIFAR_HPO_STORAGE",
        help="Optuna storage URL (postgresql://..., sqlite:///..., journal:FILE) "
        "[default: sqlite:///studies/optuna.db].",
    ),
]


@app.command("sweep")
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
    sweeps_dir: Annotated[Path, typer.Option(help="Folder of study YAML files.")] = Path("sweeps"),
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
    from cifar_hpo.sweep.ranking import primary_value
    from cifar_hpo.sweep.report import best_trial, state_counts
    from cifar_hpo.sweep.runner import run_sweep
    from cifar_hpo.sweep.workers import require_shared_storage, run_sweep_workers

    trials = _trial_count(trials)
    if workers < 1:  # checked here, not by click: one line, not Typer's box
        raise UserError(f"--workers {workers}: expected 1 or more worker processes")
    budget_s = parse_duration(budget) if budget is not None else None
    if timeout is not None and not timeout > 0:
        raise UserError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
    # MLflow's client prints a "View run" URL for every run it ends on a tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    overrides = parse_overrides(set_ or [])
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
    counts = state_counts(outcome.study)
    best = best_trial(outcome.study)
    console.print(
        f"study [bold]{study}[/]: {len(outcome.new_trials)} new trials; totals: "
        + ", ".join(f"{k.lower()} {v}" for k, v in counts.items() if v)
    )
    record = StudyRecord(outcome.study)
    champion = record.champion
    if champion.get("trial") != getattr(best, "number", None):
        champion = {}
    if best is not None:
        console.print(
            f"best trial {best.number}: {primary_value(best):.4f} "
            f"(test acc {_or_nan(TrialRecord(best).test_acc):.4f}, "
            f"registry version {champion.get('version', '-')})"
        )
    refit = record.refit
    if refit.get("test_acc") is not None and refit.get("model_id"):
        console.print(
            f"champion: trial {refit['trial']}'s configuration refit for {refit['epochs']:g} "
            f"epochs on the whole training split, test acc {refit['test_acc']:.4f}",
            highlight=False,
        )
    reference = record.reference_refit
    if reference.get("test_acc") is not None:
        console.print(
            f"reference recipe: trial {reference['trial']}'s configuration refit for "
            f"{reference['epochs']:g} epochs, test acc {reference['test_acc']:.4f}"
        )
    race = record.race
    if race.get("summary"):
        console.print(f"finalists' race: {race['summary']}", highlight=False, soft_wrap=True)
    _print_ui_hint(outcome.parent_run_id, study)
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

    from cifar_hpo.sweep.storage import FAIL_REASON_ATTR

    wanted = set(numbers)
    new = [t for t in study.get_trials(deepcopy=False) if t.number in wanted]
    if not new or any(t.state != TrialState.FAIL for t in new):
        return None
    reasons = {t.user_attrs.get(FAIL_REASON_ATTR) or "see the trial's MLflow run" for t in new}
    return len(new), sorted(reasons)


@app.command("studies")
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
        _print_study_list(store)
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
    _print_leaderboard(board)


def _print_study_list(store) -> None:
    import optuna

    from cifar_hpo.sweep.report import best_trial, state_counts

    summaries = optuna.get_all_study_summaries(store)
    table = Table(title="studies")
    for col in ("study", "complete", "pruned", "fail", "running", "best value", "best trial"):
        table.add_column(col, justify="left" if col == "study" else "right")
    for summary in sorted(summaries, key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        counts = state_counts(study)
        if len(study.directions) > 1:  # no single best: the Pareto front's trials
            front = sorted(t.number for t in study.best_trials) if counts["COMPLETE"] else []
            best_cells = (f"{len(front)} on the Pareto front", ", ".join(map(str, front)) or "-")
        else:
            best = best_trial(study)
            best_cells = (f"{best.value:.4f}", str(best.number)) if best else ("-", "-")
        table.add_row(
            summary.study_name,
            str(counts["COMPLETE"]),
            str(counts["PRUNED"]),
            str(counts["FAIL"]),
            str(counts["RUNNING"]),
            *best_cells,
        )
    console.print(table if summaries else "no studies stored yet")


def _cell(value) -> str:
    """A parameter or metric for a table cell: 4 significant digits, thousands separated."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _print_leaderboard(board) -> None:
    arrow = "↓" if board.descending else "↑"
    names = [o.name for o in board.objectives]
    extra = [] if board.sort_key in names else [board.sort_key]
    table = Table(title=f"study {board.study}: top {len(board.entries)} of {board.total} trials")
    table.add_column("#", justify="right")
    table.add_column("trial", justify="right")
    for name in names + extra:
        table.add_column(f"{name} {arrow}" if name == board.sort_key else name, justify="right")
    if board.multi_objective:
        table.add_column("pareto")
    for name in board.param_names:
        table.add_column(name, justify="right")
    for col in ("state", "epochs", "mlflow run"):
        table.add_column(col, justify="right" if col == "epochs" else "left")
    for e in board.entries:
        state = e.state.name.lower() + ("" if e.feasible else ", infeasible")
        row = [str(e.rank), str(e.number)]
        row += [_cell(e.values[n]) for n in names] + [_cell(e.key) for _ in extra]
        if board.multi_objective:
            row.append("yes" if e.pareto else "")
        row += [_cell(e.trial.params.get(p)) for p in board.param_names]
        epochs = f"{e.epochs_run:g}" if e.epochs_run is not None else "-"
        row += [state, epochs, e.run_id or "-"]
        table.add_row(*row, style=None if e.feasible else "red")
    order = "descending" if board.descending else "ascending"
    note = f"sorted by {board.sort_key} ({order}); complete, feasible trials first"
    if board.infeasible:
        note += f"; {board.infeasible} infeasible (a constraint > 0) after them"
    console.print(table if board.entries else f"study {board.study} has no trials yet")
    if board.entries:
        console.print(note, highlight=False)


@app.command("dashboard")
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
        where = storage or "studies/optuna.db"
        console.print(
            f"optuna-dashboard on [bold]{url}[/] (storage {where}); Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )

    try:
        serve_dashboard(storage, host=host, port=port, ready=ready)
    except KeyboardInterrupt:
        pass


@app.command("best")
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
    from cifar_hpo.reproduce.table import pct
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
        console.print(_front_table(study, front_rows(optuna_study)))
    best = find_best(study, storage, trial=trial, limits=limits or None)
    chosen = "best" if trial is None and not limits else "chosen"
    table = Table(title=f"{chosen} trial of {study}: #{best.number}", show_header=False)
    names = optuna_study.metric_names or ["value"]
    table.add_row(names[0], f"{best.value:.4f}")
    measures = TrialRecord(best).measures
    for key in ("params", "macs", "latency_ms"):
        if measures.get(key) is not None:
            table.add_row(
                key, f"{measures[key]:,.4g}" if key == "latency_ms" else f"{measures[key]:,.0f}"
            )
    if best.test_acc is not None:
        table.add_row("test acc", f"{best.test_acc:.4f}")
    for k, v in best.params.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    for label, refit in (("refit", best.refit), ("reference recipe", best.reference)):
        if not refit:
            continue
        search = f"trial {refit['trial']}: {refit['search_value']:.4f} at search fidelity; "
        table.add_row(
            label,
            (search if refit is best.reference else "")
            + f"{refit['epochs']:g} epochs on the whole training split: validation "
            f"{pct(refit.get('val_acc'))}, test {pct(refit.get('test_acc'))}"
            + (" (the champion)" if refit is best.refit else ""),
        )
    if best.race:
        for arm in best.race["arms"]:
            accs = ", ".join(pct(a) for a in arm["test_acc"])
            table.add_row(
                f"race: trial {arm['trial']}" + (" (recipe)" if arm["reference"] else ""),
                f"test {accs} (seeds {', '.join(map(str, arm['seeds']))})",
            )
        table.add_row("race result", best.race["summary"])
    table.add_row("mlflow run", best.run_id or "-")
    table.add_row("registry", f"cifar-hpo-{study} v{best.registry_version or '-'}")
    console.print(table)
    if export is not None:
        path = export_best(best, export)
        console.print(f"exported to [bold]{path}[/] (torch.export; see README 'Exported models')")


def _front_table(study: str, rows: list[dict]) -> Table:
    """The Pareto front of a multi-objective study as a rich table."""
    table = Table(title=f"Pareto front of {study} ({len(rows)} trials, best first)")
    columns = list(rows[0]) if rows else ["trial"]
    for col in columns:
        table.add_column(col, justify="left" if col == "mlflow_run_id" else "right")
    for row in rows:
        cells = []
        for col in columns:
            v = row[col]
            if v is None:
                cells.append("-")
            elif col in ("params", "macs", "train_flops"):
                cells.append(f"{v:,.0f}")
            elif isinstance(v, float):
                cells.append(f"{v:.4g}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table


@app.command("compare")
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

    with console.status("comparing ..."):
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
    console.print(f"champion:   {escape(cmp.champion.title)}")
    console.print(f"challenger: {escape(cmp.challenger.title)}")
    _print_class_deltas(cmp)
    _print_costs(cmp)
    if cmp.disagreements is not None:
        d = cmp.disagreements
        console.print(
            f"disagree on {d.total} of {d.images} {cmp.split} images: challenger right "
            f"{d.challenger_right}, champion right {d.champion_right}, both wrong {d.both_wrong}"
        )
    if cmp.mcnemar is not None:
        m, delta = cmp.mcnemar, cmp.accuracy.get("delta")
        diff = f"{100 * delta:+.2f} points, " if delta is not None else ""
        console.print(
            f"challenger minus champion on {cmp.split}: {diff}exact McNemar p = "
            f"{m.p_value:.2g} ({m.only_a} images only the challenger gets right, {m.only_b} "
            "only the champion; one run each: no interval across seeds)",
            highlight=False,
        )
    if cmp.changes:
        console.print(
            "largest confusion changes: "
            + ", ".join(f"{c['true']}->{c['predicted']} {c['change']:+d}" for c in cmp.changes)
        )
    for note in cmp.notes:
        console.print(f"note: {escape(note)}")
    if cmp.artifact_dir:
        console.print(f"logged to run {cmp.challenger.run_id}: {cmp.artifact_dir}/")


def _delta(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    color = "green" if value > 0 else "red" if value < 0 else "dim"
    return f"[{color}]{value:+.{digits}f}[/]"


def _print_class_deltas(cmp) -> None:
    table = Table(title=f"per class, {cmp.split} split: challenger - champion")
    table.add_column("class")
    table.add_column("support", justify="right")
    for key in ("precision", "recall"):
        table.add_column(f"\u0394 {key}", justify="right")
    table.add_column("F1 champion", justify="right")
    table.add_column("F1 challenger", justify="right")
    table.add_column("\u0394 F1", justify="right")
    rows = [*cmp.per_class, {"name": "macro avg", "support": None, **cmp.macro}]
    for i, row in enumerate(rows):
        table.add_row(
            escape(row["name"]),
            str(row["support"]) if row["support"] is not None else "",
            _delta(row["delta"]["precision"]),
            _delta(row["delta"]["recall"]),
            f"{row['champion']['f1']:.4f}",
            f"{row['challenger']['f1']:.4f}",
            _delta(row["delta"]["f1"]),
            end_section=i == len(rows) - 2,
        )
    console.print(table)


def _print_costs(cmp) -> None:
    table = Table(title="side by side")
    for col in ("", "champion", "challenger", "\u0394"):
        table.add_column(col, justify="left" if not col else "right")
    acc = cmp.accuracy
    table.add_row(
        f"{cmp.split} acc",
        *(f"{acc[s]:.4f}" if acc[s] is not None else "-" for s in ("champion", "challenger")),
        _delta(acc["delta"]),
    )
    a, b = cmp.cost["champion"], cmp.cost["challenger"]
    for key, label, fmt in (
        ("params", "params", "{:,.0f}"),
        ("macs", "MACs/image", "{:,.0f}"),
        ("tta", "TTA level", "{:.0f}"),
        ("latency_ms", "latency ms (batch 1, CPU, 1 thread)", "{:.3f}"),
    ):
        va, vb = a.get(key), b.get(key)
        cells = [fmt.format(v) if v is not None else "-" for v in (va, vb)]
        diff = "-"
        if va is not None and vb is not None and key != "tta":
            diff = f"{(vb - va) / va:+.1%}" if va else "-"
        table.add_row(label, *cells, diff)
    console.print(table)


@app.command("predict")
@friendly_errors
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Exported model file (cifar-hpo best --export).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    top_k: Annotated[int, typer.Option(min=1, help="Also show the top-k classes.")] = 1,
) -> None:
    """Classify images of any size and mode (resized to 32x32 RGB): class and confidence."""
    from cifar_hpo.predict import predict_files

    for p in predict_files(model, paths, top_k=max(top_k, 1)):
        extra = ""
        if top_k > 1:
            extra = "  (" + ", ".join(f"{n} {c:.2f}" for n, c in p.top) + ")"
        typer.echo(f"{p.path}\t{p.label}\t{p.confidence:.4f}{extra}")  # tab-separated, no wrap


@app.command("reproduce")
@friendly_errors
def reproduce_cmd(
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Every recipe N epochs (schedules fitted to N).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="The seeds' own epoch counts (for a GPU).")
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
    sweeps_dir: Annotated[Path, typer.Option(help="Folder of study YAML files.")] = Path("sweeps"),
    data_dir: DataDirOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override every recipe, e.g. device=cpu.")
    ] = None,
    table_only: Annotated[
        bool, typer.Option("--table-only", help="Rewrite from the latest batch; no training.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Retrain the seeds' recipes and the best baseline trial; rewrite the README table."""
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
                console=console,
                show_progress=progress,
            )
        except KeyboardInterrupt:
            err_console.print("interrupted: the batch is marked KILLED; README left unchanged")
            raise typer.Exit(130) from None
    table = Table(title=f"readme-table (batch {outcome.parent_run_id[:8]})")
    for col in ("recipe", "status", "test top-1", "minutes"):
        table.add_column(col, justify="left" if col in ("recipe", "status") else "right")
    for row in outcome.table.rows:
        acc = row.metric("test_acc")
        secs = row.metric("seconds")
        table.add_row(
            row.recipe,
            row.status,
            f"{100 * acc:.2f} %" if acc is not None else "-",
            f"{secs / 60:.1f}" if secs is not None and acc is not None else "-",
        )
    console.print(table)
    where = "inserted a section with the markers into" if outcome.markers_inserted else "rewrote"
    console.print(f"{where} {outcome.readme}; plots: {', '.join(map(str, outcome.plots.values()))}")


def main() -> None:  # pragma: no cover - console entry
    """Console-script entry point."""
    app()
