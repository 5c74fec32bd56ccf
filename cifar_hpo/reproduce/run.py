"""Train every recipe in order, track each as an MLflow run, then rewrite the README table.

One call of :func:`reproduce` is one *batch*: a parent run ``table-<budget>`` in the MLflow
experiment ``readme-table`` (budget, command, commit, library versions, machine as tags) and one
child run per recipe (role ``recipe``: resolved config as params, per-epoch metrics through
:class:`cifar_hpo.tracking.TrialRun`, test metrics and per-class report through its
``log_result``, plus parameters, MACs, epochs run, training images and images/s). Recipes run
one after another, each seeded by its config, so the same machine reproduces the same
accuracies. A recipe whose data cannot be loaded (CIFAR-100 offline) or whose study has no
completed trial is recorded as ``skipped`` with the reason; a failing one as ``failed``; the
batch goes on. The table and plots are then written from what MLflow holds, not from memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cifar_hpo.config import TrainConfig
from cifar_hpo.data import CifarData, DatasetError, load_dataset
from cifar_hpo.device import amp_enabled, resolve_device
from cifar_hpo.engine import DIVERGED, Result
from cifar_hpo.errors import ConfigError
from cifar_hpo.models import count_macs, count_parameters, create_model
from cifar_hpo.provenance import cpu_features, git_commit, host_text, library_versions
from cifar_hpo.reproduce.recipes import (
    RECIPES_FILE,
    Budget,
    PlannedRun,
    load_recipes,
    plan_runs,
)
from cifar_hpo.reproduce.table import (
    EXPERIMENT,
    TableData,
    collect,
    latest_batch,
    render,
    rewrite_readme,
    write_plots,
)
from cifar_hpo.tracking import (
    REASON_TAG,
    RECIPE_TAG,
    Role,
    RunOutcome,
    RunSpec,
    TrackedRun,
    Tracker,
    TrialRun,
    mlflow_version,
    tracked_run,
)

SKIPPED, FAILED = "skipped", "failed"


@dataclass
class ReproduceOutcome:
    """What a :func:`reproduce` call did."""

    parent_run_id: str
    table: TableData
    readme: Path
    plots: dict[str, Path] = field(default_factory=dict)
    markers_inserted: bool = False


def reproduce(
    budget: Budget | None = None,
    *,
    recipes_file: str | Path = RECIPES_FILE,
    readme: str | Path = "README.md",
    docs_dir: str | Path | None = None,
    only: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    storage: str | None = None,
    sweeps_dir: str | Path = "sweeps",
    tracking_uri: str | None = None,
    command: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> ReproduceOutcome:
    """Train the recipes of ``recipes_file`` under ``budget`` and rewrite ``readme``'s table.

    Args:
        budget: how long each recipe trains (default: each recipe's ``cpu`` cap).
        recipes_file: the recipes YAML.
        readme: the README whose ``readme-table`` markers are rewritten.
        docs_dir: where the plots go (default ``docs/`` next to the README).
        only: train just these recipe names (the table then holds just them).
        overrides: dotted config overrides for every recipe, e.g. ``{"device": "cpu"}``.
        data_dir: dataset folder for configs that do not name one.
        storage: Optuna storage of the studies that study recipes read.
        sweeps_dir: folder of the study specs.
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI`` or MLflow's).
        command: the command line recorded in the table (default: ``cifar-hpo reproduce``).
        console: where progress and per-recipe lines go (None: silent).
        show_progress: show epoch/batch bars (needs ``console``).

    Raises:
        ConfigError: invalid recipes file, override or ``only`` name (before any training).
        OSError: the README does not exist.
    """
    budget = budget or Budget()
    readme = Path(readme)
    if not readme.is_file():
        raise FileNotFoundError(2, "no such README", str(readme))
    book = load_recipes(recipes_file)
    plans = plan_runs(
        book, budget, only=only, overrides=overrides, storage=storage, sweeps_dir=sweeps_dir
    )
    tracker = Tracker(tracking_uri)
    spec = RunSpec(
        Role.TABLE,
        EXPERIMENT,
        f"table-{budget.label}",
        tags=_batch_tags(budget, recipes_file, command or "cifar-hpo reproduce", readme),
        system_metrics=False,
    )
    loader = _DataLoader(data_dir)
    with tracked_run(tracker, spec) as batch:
        for i, plan in enumerate(plans, start=1):
            if console is not None:
                console.print(f"[bold][{i}/{len(plans)}] {plan.recipe.name}[/]: {_describe(plan)}")
            run_recipe(plan, tracker, batch.run_id, loader, console, show_progress)
        batch.run.set_tags({"cifar_hpo.finished": _now_text()})
    parent_id = batch.run_id
    return write_table(
        parent_id, readme=readme, docs_dir=docs_dir, tracking_uri=tracking_uri, tracker=tracker
    )


def write_table(
    parent_run_id: str | None = None,
    *,
    readme: str | Path = "README.md",
    docs_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    tracker: Tracker | None = None,
) -> ReproduceOutcome:
    """Rewrite ``readme``'s table and the plots from a batch's MLflow runs (default: the
    latest finished batch); the Markdown block and plots are also logged to the parent run.

    Raises:
        ValueError: there is no finished batch in the ``readme-table`` experiment.
    """
    tracker = tracker or Tracker(tracking_uri)
    parent_run_id = parent_run_id or latest_batch(tracker)
    if parent_run_id is None:
        raise ConfigError(
            f"no finished batch in MLflow experiment {EXPERIMENT!r} at {tracker.tracking_uri}; "
            "run `cifar-hpo reproduce` first"
        )
    readme = Path(readme)
    docs = Path(docs_dir) if docs_dir is not None else readme.parent / "docs"
    table = collect(tracker, parent_run_id)
    plots = write_plots(tracker, table, docs)
    rel = {name: _relative(path, readme.parent) for name, path in plots.items()}
    body = render(table, rel)
    inserted = rewrite_readme(readme, body)
    batch = TrialRun(tracker, parent_run_id)
    batch.log_text(body + "\n", "readme_table.md")
    batch.log_files(plots.values(), "plots")
    return ReproduceOutcome(parent_run_id, table, readme, plots, inserted)


def run_recipe(
    plan: PlannedRun,
    tracker: Tracker,
    parent_run_id: str,
    loader: _DataLoader,
    console: Console | None = None,
    show_progress: bool = False,
) -> str:
    """Train one planned recipe as a child run of ``parent_run_id``; returns its run id.

    Never raises for a recipe's own failure (it is recorded); Ctrl-C ends the run KILLED and
    propagates. No error path leaves the run RUNNING.
    """
    recipe, config = plan.recipe, plan.config
    tags = {
        "cifar_hpo.batch": parent_run_id,
        RECIPE_TAG: recipe.name,
        "cifar_hpo.order": str(plan.order),
        "cifar_hpo.project": recipe.project,
        "cifar_hpo.source_epochs": str(recipe.epochs),
        "cifar_hpo.budget_epochs": str(plan.epochs),
        **plan.source,
    }
    if plan.reported is not None:
        tags["cifar_hpo.reported_metric"] = plan.reported.metric
        tags["cifar_hpo.reported_value"] = repr(plan.reported.value)
        tags["cifar_hpo.reported_text"] = plan.reported.text
    spec = RunSpec(
        Role.RECIPE,
        EXPERIMENT,
        recipe.name,
        config,
        tags=tags,
        parent_run_id=parent_run_id,
        system_metrics=False,
    )
    with tracked_run(tracker, spec) as tracked:
        status, reason, outcome = _train_recipe(plan, tracked, loader, console, show_progress)
        try:
            tracked.run.set_tags(
                {"cifar_hpo.status": status, **({REASON_TAG: reason} if reason else {})}
            )
        finally:
            tracked.end(outcome)
    if console is not None and status in (SKIPPED, FAILED, DIVERGED):
        console.print(f"  [yellow]{status}:[/] {reason}")
    return tracked.run_id


def _train_recipe(
    plan: PlannedRun,
    tracked: TrackedRun,
    loader: _DataLoader,
    console: Console | None,
    show_progress: bool,
) -> tuple[str, str, RunOutcome]:
    """Fill a recipe's run: model size, device, dataset, training, result and summary.

    Returns:
        (the table's status for it, the reason of a non-complete one, the run's outcome): a
        recipe's own failure is recorded, not raised. Ctrl-C propagates (the run is tagged
        failed; :func:`~cifar_hpo.tracking.tracked_run` ends it KILLED).
    """
    run, config = tracked.run, plan.config
    if config is None:
        return SKIPPED, plan.skip, RunOutcome.COMPLETE
    bar = None
    try:
        try:
            data = loader(config)
        except DatasetError as err:
            run.log_metrics(_model_stats(config, None))
            return SKIPPED, str(err), RunOutcome.COMPLETE
        run.log_metrics(_model_stats(config, data))
        device = resolve_device(config.device)
        run.set_tags({"cifar_hpo.device": device_text(device, config)})
        train_images = len(tracked.log_dataset(data).train_idx)
        if console is not None and show_progress:
            from cifar_hpo.progress import RichProgress

            bar = RichProgress(console, label=plan.recipe.name)
        result = tracked.train(data, extra=[bar] if bar is not None else [])
        if bar is not None:
            bar.close()
            bar = None
        trained = tracked.record(result, data)  # False: diverged (the run is ended FAILED)
        run.log_metrics(_summary_metrics(result, train_images), step=len(result.history))
    except KeyboardInterrupt:
        run.set_tags({"cifar_hpo.status": FAILED})
        raise
    except Exception as err:  # noqa: BLE001 - recorded; the batch goes on
        return FAILED, f"{type(err).__name__}: {err}", RunOutcome.FAILED
    finally:
        if bar is not None:
            bar.close()
    if console is not None and result.test is not None:
        console.print(
            f"  test top-1 {100 * result.test.metrics['acc']:.2f} %, {result.seconds / 60:.1f} min"
        )
    if not trained:
        return DIVERGED, result.message, RunOutcome.FAILED
    return result.status, result.message, RunOutcome.COMPLETE


def _summary_metrics(result: Result, train_images: int) -> dict[str, float]:
    """Epochs run, images per epoch, pooled training images/s, best validation values."""
    seconds, prev = 0.0, 0
    for row in result.history:
        images = row["images_seen"] - prev
        prev = row["images_seen"]
        if row.get("images_per_sec"):
            seconds += images / row["images_per_sec"]
    # epochs in optimizer steps, so a fractional run (airbench94: 9.9) shows as such
    batch = min(result.config.batch_size, train_images) or 1
    epoch_images = (train_images // batch) * batch or 1
    epochs_run = float(len(result.history))
    if result.history and result.images_seen % epoch_images:
        epochs_run = round(result.images_seen / epoch_images, 2)
    values = {"epochs_run": epochs_run, "train_images": float(train_images)}
    if seconds > 0:
        values["train_images_per_sec"] = prev / seconds
        values["train_seconds"] = seconds
    val_acc = [r["val_acc"] for r in result.history if r.get("val_acc") is not None]
    val_loss = [r["val_loss"] for r in result.history if r.get("val_loss") is not None]
    if val_acc:
        values["best_val_acc"] = max(val_acc)
    if val_loss:
        values["best_val_loss"] = min(val_loss)
    if result.val is not None:
        values["final_val_acc"] = result.val.metrics["acc"]
    return {k: float(v) for k, v in values.items()}


def _model_stats(config: TrainConfig, data: CifarData | None) -> dict[str, float]:
    """Parameters and MACs per image of the recipe's model, for the dataset's class count."""
    num_classes = data.num_classes if data is not None else _num_classes(config.data.dataset)
    torch.manual_seed(config.seed)
    model = create_model(config.model.name, num_classes, **config.model.hparams)
    return {"num_params": float(count_parameters(model)), "macs": float(count_macs(model))}


def _num_classes(dataset: str) -> int:
    return 100 if dataset == "cifar100" else 10


class _DataLoader:
    """Loads each dataset once per batch; a failure is remembered, not retried."""

    def __init__(self, data_dir: str | Path | None):
        self.data_dir = data_dir
        self.cache: dict[tuple[str, str | None], CifarData | DatasetError] = {}

    def __call__(self, config: TrainConfig) -> CifarData:
        folder = config.data.data_dir or (str(self.data_dir) if self.data_dir else None)
        key = (config.data.dataset, folder)
        if key not in self.cache:
            try:
                self.cache[key] = load_dataset(config.data.dataset, folder)
            except DatasetError as err:
                self.cache[key] = err
        found = self.cache[key]
        if isinstance(found, DatasetError):
            raise found
        return found


def device_text(device: torch.device, config: TrainConfig) -> str:
    """Short device label for the table, e.g. ``cpu x2 (bf16)`` or ``NVIDIA H100 (fp16)``."""
    amp = amp_enabled(device, config.amp)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({'fp16' if amp else 'fp32'})"
    if device.type == "cpu":
        return f"cpu x{torch.get_num_threads()} ({'bf16' if amp else 'fp32'})"
    return f"{device.type} ({'fp16' if amp else 'fp32'})"


def _describe(plan: PlannedRun) -> str:
    if plan.config is None:
        return "skipped"
    c = plan.config
    return (
        f"{c.model.name} on {c.data.dataset}, {plan.epochs} epoch{'s' * (plan.epochs != 1)} "
        f"(source: {plan.recipe.epochs}) on {100 * plan.train_fraction:g} % of the training split"
    )


def _batch_tags(budget: Budget, recipes_file, command: str, readme: Path) -> dict[str, str]:
    import optuna

    versions = {**library_versions(), "optuna": optuna.__version__, "mlflow": mlflow_version()}
    return {
        "cifar_hpo.budget": budget.label,
        "cifar_hpo.budget_text": budget.describe(recipes_file),
        "cifar_hpo.command": command,
        "cifar_hpo.commit": git_commit(readme.resolve().parent),
        "cifar_hpo.versions": json.dumps(versions),
        "cifar_hpo.versions_text": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "cifar_hpo.host": host_text(),
        "cifar_hpo.cpu_features": cpu_features(),
        "cifar_hpo.started": _now_text(),
    }


def _now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
