"""``train`` and ``lr-find``: one model, one run folder, one MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import friendly_errors, interrupt_on_sigterm
from cifar_hpo.cli.options import DataDirOpt


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


@dataclass
class TrainOutcome:
    """What :func:`run_training` did: the result, its run folder, MLflow run and runs URL."""

    result: Any  # cifar_hpo.engine.Result
    run_dir: Path
    run_id: str | None
    url: str


def run_training(
    cfg,
    *,
    out: Path,
    run_dir: Path | None = None,
    ckpt: dict | None = None,
    track: bool = True,
    system_metrics: bool = True,
    progress: bool = True,
) -> TrainOutcome:
    """Load the data, make the run folder (after the data loaded: a failed start leaves none)
    and train ``cfg`` with run-folder, checkpoint and progress callbacks, tracked in MLflow's
    ``train`` experiment unless ``track`` is off. ``ckpt`` continues a run in ``run_dir``."""
    from cifar_hpo.callbacks import Checkpointing
    from cifar_hpo.data import load_dataset
    from cifar_hpo.models import count_macs, create_model
    from cifar_hpo.progress import RichProgress
    from cifar_hpo.runs import CHECKPOINT, RunFolderWriter, new_run_dir
    from cifar_hpo.tracking import TRAIN_EXPERIMENT, NullTracker, Tracker, tracked_train

    tracker = Tracker(system_metrics=system_metrics) if track else NullTracker()
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir)
    macs = count_macs(create_model(cfg.model.name, data.num_classes, **cfg.model.hparams))
    if run_dir is None:
        run_dir = new_run_dir(out, cfg.model.name)
    render.run_started(run_dir, cfg)
    callbacks = [RunFolderWriter(run_dir), Checkpointing(run_dir / CHECKPOINT)]
    if progress:
        callbacks.append(RichProgress(render.console))
    interrupt_on_sigterm()
    result, run_id = tracked_train(
        tracker, cfg, data, callbacks, run_folder=run_dir, resume=ckpt, macs=macs
    )
    url = tracker.runs_table_url(TRAIN_EXPERIMENT) if run_id else ""
    return TrainOutcome(result, run_dir, run_id, url)


def _resumed(resume: Path):
    """(config, checkpoint, run folder) of the run ``resume`` names (folder or checkpoint)."""
    from cifar_hpo.checkpoint import load_checkpoint
    from cifar_hpo.config import TrainConfig
    from cifar_hpo.runs import CHECKPOINT

    ckpt_path = resume / CHECKPOINT if resume.is_dir() else resume
    ckpt = load_checkpoint(ckpt_path)
    return TrainConfig.from_dict(ckpt["config"]), ckpt, ckpt_path.parent


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
    ckpt = run_dir = None
    if resume is not None:
        cfg, ckpt, run_dir = _resumed(resume)
    else:
        named = {
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
        }
        cfg = build_train_config(config, set_ or [], recipe, **named)
    done = run_training(
        cfg,
        out=out,
        run_dir=run_dir,
        ckpt=ckpt,
        track=track,
        system_metrics=system_metrics,
        progress=progress,
    )
    render.trained(done)
    if done.result.status == "diverged":
        raise typer.Exit(1)


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
    """LR range test (source project 003): saves loss-vs-LR plot and suggests OneCycle's max LR."""
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
    with render.console.status("running LR range test ..."):
        res = lr_range_test(cfg, data, start_lr, end_lr, steps)
    plot_lr_finder(res.lrs, res.losses, res.suggestion, plot)
    render.lr_suggestion(res.suggestion, plot)
