"""The README results table and its plots, built only from MLflow runs.

:func:`collect` reads one batch (a ``table`` parent run and its ``recipe`` child runs) of the
``readme-table`` experiment back from MLflow; :func:`render` turns it into the Markdown block
that :func:`rewrite_readme` puts between ``<!-- RESULTS:readme-table -->`` and
``<!-- /RESULTS:readme-table -->``; :func:`write_plots` draws the per-class F1 chart (from each
run's ``per_class.json`` artifact) and the accuracy-vs-parameters chart (recipes plus every
sweep trial with a ``test_acc`` metric in the ``cifar-hpo/<study>`` experiments).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cifar_hpo.errors import ConfigError  # noqa: E402

# also importable from here: reproduce.run and older bench scripts import them from this module
from cifar_hpo.reports import (  # noqa: E402, F401 (re-exported)
    MARKER,
    count,
    markers,
    md_cell,
    minutes,
    pct,
    rewrite_readme,
)
from cifar_hpo.tracking import (  # noqa: E402
    ROLE_TAG,
    Role,
    RunRecord,
    Tracker,
    experiment_name,
)

EXPERIMENT = "readme-table"
PER_CLASS_PLOT = "per_class_f1.png"
SCATTER_PLOT = "accuracy_vs_params.png"
COLUMNS = (
    "recipe",
    "source project",
    "model",
    "params",
    "MACs",
    "dataset",
    "epochs run / source's",
    "train images",
    "test top-1",
    "top-5",
    "macro F1",
    "source reports",
    "ours, same metric",
    "minutes",
    "images/s",
    "device",
)
_RIGHT = {"params", "MACs", "epochs run / source's", "train images", "test top-1", "top-5"}
_RIGHT |= {"macro F1", "ours, same metric", "minutes", "images/s"}


@dataclass
class Row:
    """One recipe run as read back from MLflow (values, not formatted)."""

    run_id: str
    recipe: str
    order: int
    project: str
    status: str
    reason: str
    model: str | None
    dataset: str | None
    source_epochs: int | float | None
    budget_epochs: int | float | None
    train_fraction: float | None
    device: str
    metrics: dict[str, float]
    reported: dict[str, Any] | None

    def metric(self, key: str) -> float | None:
        """A metric's latest value, or None when the run did not log it."""
        value = self.metrics.get(key)
        return None if value is None or not math.isfinite(value) else float(value)

    @property
    def trained(self) -> bool:
        """True when the run trained and was evaluated on the test set."""
        return self.metric("test_acc") is not None


@dataclass
class TableData:
    """A batch: its parent run's tags (budget, command, commit, ...) and its rows in order."""

    parent_run_id: str
    meta: dict[str, str]
    rows: list[Row] = field(default_factory=list)


def collect(reader: Tracker, parent_run_id: str) -> TableData:
    """Read a batch back from MLflow: the parent's tags and every child recipe run.

    Args:
        reader: the :class:`~cifar_hpo.tracking.Tracker` to read through.
        parent_run_id: the batch's ``table`` run.

    Raises:
        ConfigError: there is no run ``parent_run_id``.
    """
    parent = reader.run_record(parent_run_id)
    if parent is None:
        raise ConfigError(f"no MLflow run {parent_run_id!r} (a README-table batch)")
    meta = {
        key.removeprefix("cifar_hpo."): v
        for key, v in parent.tags.items()
        if key.startswith("cifar_hpo.")
    }
    runs = reader.find_runs(
        parent.experiment, f"tags.`cifar_hpo.batch` = '{parent_run_id}'", max_results=1000
    )
    rows = [_row(r) for r in runs if r.tags.get(ROLE_TAG) == Role.RECIPE]
    rows.sort(key=lambda r: (r.order, r.recipe))
    return TableData(parent_run_id, meta, rows)


def latest_batch(reader: Tracker, experiment: str = EXPERIMENT) -> str | None:
    """Id of the most recent FINISHED batch (``table`` run) of ``experiment``, or None."""
    runs = reader.find_runs(
        experiment,
        f"tags.`{ROLE_TAG}` = '{Role.TABLE}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].run_id if runs else None


def _row(run: RunRecord) -> Row:
    tags, params = run.tags, run.params

    def _int(text: str | None) -> int | None:
        return int(text) if text not in (None, "") else None

    def _epochs(text: str | None) -> int | float | None:
        if text in (None, ""):
            return None
        value = float(text)
        return int(value) if value.is_integer() else value

    reported = None
    if tags.get("cifar_hpo.reported_metric"):
        reported = {
            "metric": tags["cifar_hpo.reported_metric"],
            "value": float(tags["cifar_hpo.reported_value"]),
            "text": tags.get("cifar_hpo.reported_text", ""),
        }
    fraction = params.get("data.train_fraction")
    return Row(
        run_id=run.run_id,
        recipe=tags.get("cifar_hpo.recipe", run.name or "?"),
        order=_int(tags.get("cifar_hpo.order")) or 0,
        project=tags.get("cifar_hpo.project", ""),
        status=tags.get("cifar_hpo.status", run.status.lower()),
        reason=tags.get("cifar_hpo.reason", ""),
        model=params.get("model.name"),
        dataset=params.get("data.dataset"),
        source_epochs=_epochs(tags.get("cifar_hpo.source_epochs")),
        budget_epochs=_epochs(tags.get("cifar_hpo.budget_epochs")),
        train_fraction=float(fraction) if fraction else None,
        device=tags.get("cifar_hpo.device", ""),
        metrics=dict(run.metrics),
        reported=reported,
    )


# ----------------------------------------------------------------------------- formatting
def ours_same_metric(row: Row) -> str:
    """Our value of the metric the source reported (test/val accuracy or val loss)."""
    if row.reported is None or not row.trained:
        return "-"
    metric = row.reported["metric"]
    if metric == "best_val_loss":
        value = row.metric("best_val_loss")
        return "-" if value is None else f"val loss {value:.4f}"
    key, label = {
        "test_acc": ("test_acc", "test"),
        "best_val_acc": ("best_val_acc", "best val"),
        "val_acc": ("final_val_acc", "val"),
    }[metric]
    value = row.metric(key)
    return "-" if value is None else f"{pct(value)} {label}"


def epochs_cell(row: Row) -> str:
    """``2 / 250``; an early-stopped run shows the epochs it ran and the budget's."""
    run = row.metric("epochs_run")
    source = "-" if row.source_epochs is None else str(row.source_epochs)
    if run is None:
        return f"- / {source}"
    text = f"{run:g} / {source}"
    if row.budget_epochs is not None and run < row.budget_epochs - 0.05:
        text = f"{run:g} of {row.budget_epochs} / {source}"
    return text


def row_cells(row: Row, note: str = "") -> list[str]:
    """The table cells of one row, in :data:`COLUMNS` order."""
    macs = row.metric("macs")
    reported = row.reported["text"] if row.reported else "-"
    if row.trained:
        top1 = pct(row.metric("test_acc"))
    else:
        top1 = row.status
    top1 += note
    seconds = row.metric("seconds")
    ips = row.metric("train_images_per_sec")
    cells = [
        f"`{row.recipe}`",
        row.project or "-",
        f"`{row.model}`" if row.model else "-",
        count(row.metric("num_params")),
        "-" if macs is None else f"{macs / 1e6:.1f} M",
        row.dataset or "-",
        epochs_cell(row),
        count(row.metric("train_images")),
        top1,
        pct(row.metric("test_top5"), 1),
        "-" if row.metric("test_f1_macro") is None else f"{row.metric('test_f1_macro'):.4f}",
        reported,
        ours_same_metric(row),
        minutes(seconds if row.trained else None),
        "-" if ips is None else f"{ips:,.0f}",
        row.device or "-",
    ]
    return [md_cell(c) for c in cells]


def _machine_text(meta: dict[str, str]) -> str:
    # a batch tagged before CPU features were recorded shows the host alone
    features = meta.get("cpu_features")
    host = meta.get("host", "?")
    return f"{host}; CPU features: {features}" if features else host


def render(table: TableData, plots: dict[str, str] | None = None) -> str:
    """The Markdown block (without the marker lines): table, provenance, notes, plots.

    Args:
        table: a batch from :func:`collect`.
        plots: plot name -> path relative to the README (see :func:`write_plots`).
    """
    meta = table.meta
    notes: list[str] = []
    body: list[list[str]] = []
    for row in table.rows:
        mark = ""
        text = _row_note(row)
        if text:
            notes.append(text)
            mark = f", note {len(notes)}"
        body.append(row_cells(row, mark))
    header = "| " + " | ".join(COLUMNS) + " |"
    align = "|" + "|".join("---:" if c in _RIGHT else "---" for c in COLUMNS) + "|"
    lines = [
        "<!-- generated by `cifar-hpo reproduce` from the MLflow runs of experiment "
        f"`{EXPERIMENT}`; do not edit by hand -->",
        "",
        header,
        align,
        *("| " + " | ".join(cells) + " |" for cells in body),
        "",
        f"Budget: {meta.get('budget_text', meta.get('budget', '?'))}.  ",
        f"Command: `{meta.get('command', '?')}`; finished {meta.get('finished', '?')}; commit "
        f"`{meta.get('commit', '?')}`; {meta.get('versions_text', '')}.  ",
        f"Machine: {_machine_text(meta)}. MLflow: experiment `{EXPERIMENT}`, parent run "
        f"`{table.parent_run_id}`.",
        "",
        "Columns: *epochs run / source's* compares the epochs trained with the source's own count "
        "(schedules are fitted to the epochs run, not cut off); *train images* are per epoch, "
        "after the validation hold-out and `data.train_fraction`; *test top-1*, *top-5* and "
        "*macro F1* are on the full test set; *source reports* is the source's own figure and "
        "*ours, same metric* our value of that same metric; *minutes* is the whole run's wall "
        "time, evaluation included; *images/s* is training images per second of training time.",
    ]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(notes, start=1)]
    for name, alt in (
        (PER_CLASS_PLOT, "Per-class test F1 of each recipe"),
        (SCATTER_PLOT, "Test accuracy vs parameters"),
    ):
        if plots and name in plots:
            lines += ["", f"![{alt}]({plots[name]})"]
    return "\n".join(lines)


def _row_note(row: Row) -> str:
    if row.status == "skipped":
        return f"`{row.recipe}` skipped: {row.reason}"
    if row.status in ("failed", "diverged"):
        return f"`{row.recipe}` {row.status}: {row.reason}"
    if row.status == "early_stopped":
        return f"`{row.recipe}` stopped early: {row.reason}"
    return ""


# ----------------------------------------------------------------------------- plots
def write_plots(reader: Tracker, table: TableData, folder: str | Path) -> dict[str, Path]:
    """Draw the per-class F1 chart and the accuracy-vs-parameters chart into ``folder``.

    Returns:
        Plot file name -> written path (a chart with nothing to show is not written).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    per_class = {}
    with _quiet_downloads():
        for row in table.rows:
            found = reader.read_json(row.run_id, "per_class.json") if row.trained else None
            if found is not None:
                per_class[row.recipe] = found
    if per_class:
        written[PER_CLASS_PLOT] = plot_per_class_f1(per_class, folder / PER_CLASS_PLOT)
    recipes = [
        (r.recipe, r.metric("num_params"), r.metric("test_acc"))
        for r in table.rows
        if r.trained and r.metric("num_params")
    ]
    trials = sweep_trials(reader)
    if recipes or trials:
        written[SCATTER_PLOT] = plot_accuracy_vs_params(
            recipes, trials, folder / SCATTER_PLOT, table.meta.get("budget", "")
        )
    return written


@contextlib.contextmanager
def _quiet_downloads():
    """Turn off MLflow's artifact-download progress bars for the duration."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def sweep_trials(reader: Tracker) -> list[tuple[str, float, float]]:
    """(study, params, test accuracy) of every sweep trial run with a ``test_acc`` metric."""
    out = []
    for name in reader.experiment_names(experiment_name("%")):
        runs = reader.find_runs(name, f"tags.`{ROLE_TAG}` = '{Role.TRIAL}'", max_results=5000)
        study = name.removeprefix(experiment_name(""))
        for r in runs:
            m = r.metrics
            if "test_acc" in m and m.get("num_params"):
                out.append((study, float(m["num_params"]), float(m["test_acc"])))
    return out


def plot_per_class_f1(per_class: dict[str, list[dict]], path: Path) -> Path:
    """Grouped bars: one group per class, one bar per recipe (recipes sharing the first
    recipe's classes; CIFAR-100 rows do not fit a 10-class chart)."""
    first = next(iter(per_class.values()))
    names = [c["name"] for c in first]
    same = {k: v for k, v in per_class.items() if [c["name"] for c in v] == names}
    x = np.arange(len(names))
    width = 0.8 / len(same)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(names) + 2), 4.5))
    for i, (recipe, rows) in enumerate(same.items()):
        ax.bar(x + (i - (len(same) - 1) / 2) * width, [c["f1"] for c in rows], width, label=recipe)
    if len(names) <= 30:
        ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="test F1", title="Per-class test F1 by recipe")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_accuracy_vs_params(
    recipes: list[tuple[str, float, float]],
    trials: list[tuple[str, float, float]],
    path: Path,
    budget: str = "",
) -> Path:
    """Test top-1 vs trainable parameters (log x): recipes labelled, sweep trials as dots."""
    fig, ax = plt.subplots(figsize=(8, 5))
    studies = sorted({s for s, _, _ in trials})
    for study in studies:
        pts = [(p, a) for s, p, a in trials if s == study]
        ax.scatter(
            [p for p, _ in pts],
            [100 * a for _, a in pts],
            s=14,
            alpha=0.45,
            label=f"sweep trials: {study} (its own budget)",
        )
    if recipes:
        ax.scatter(
            [p for _, p, _ in recipes],
            [100 * a for _, _, a in recipes],
            s=60,
            marker="D",
            color="black",
            label=f"recipes ({budget} budget)" if budget else "recipes",
        )
        for i, (name, p, a) in enumerate(sorted(recipes, key=lambda r: r[1])):
            offset = (5, 4) if i % 2 == 0 else (5, -11)  # neighbours alternate above/below
            ax.annotate(name, (p, 100 * a), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set(xscale="log", xlabel="trainable parameters", ylabel="test top-1 (%)")
    ax.set_title("Test accuracy vs parameters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
