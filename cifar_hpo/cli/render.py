"""Everything the commands print: tables, panels and summary lines, on :data:`console`.

The commands in the other ``cli`` modules compute and pass plain values here; nothing in this
module trains, loads a study or talks to MLflow. Tests swap :data:`console` for a wider one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_hpo.record import StudyRecord, TrialRecord
from cifar_hpo.reports import minutes, pct, sig

#: stdout of every command (errors go to ``boundary.err_console``)
console = Console()


def runs_url(label: str, run_id: str | None, url: str) -> None:
    """Where to see a run in MLflow's UI (``label``: ``MLflow run``, ``MLflow parent run``)."""
    console.print(f"{label}: {run_id}  (view with `mlflow ui`, then open")
    console.print(f"  {url})", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- data, models
def dataset_imported(data, info) -> None:
    """One line after ``data import``: counts and the cache it wrote."""
    console.print(
        f"imported [bold]{data.name}[/]: {len(data.train_labels)} train, "
        f"{len(data.test_labels)} test images, {data.num_classes} classes -> {info.cache_path}"
    )


def dataset_info(info) -> None:
    """Counts per class and split, then source, cache path and checksum."""
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


def models(num_classes: int, rows: list[tuple[Any, int, int]]) -> None:
    """The registered models: ``rows`` of (``model_info``, parameters, MACs per image)."""
    table = Table(title=f"registered models ({num_classes} classes)")
    for col in ("name", "source", "params", "MACs/image", "hyperparameters"):
        table.add_column(col, justify="right" if col in ("params", "MACs/image") else "left")
    for info, params, macs in rows:
        hp = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.hparams.items()
        )
        table.add_row(info.name, info.source, f"{params:,}", f"{macs / 1e6:.1f}M", hp)
    console.print(table)


# ----------------------------------------------------------------------------- train
def run_started(run_dir: Path, cfg) -> None:
    """The run folder and what trains, before the first epoch."""
    console.print(f"run folder: [bold]{run_dir}[/]  model {cfg.model.name}  epochs {cfg.epochs}")


def trained(done) -> None:
    """A finished (or diverged) ``train`` (``cli.train.TrainOutcome``): its metrics, cost, run
    folder and MLflow run."""
    train_result(done.result)
    console.print(f"wrote {done.run_dir}")
    if done.run_id:
        runs_url("MLflow run", done.run_id, done.url)


def train_result(result) -> None:
    """Validation and test metrics of a finished (or diverged) run, then its cost."""
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


def lr_suggestion(suggestion: float, plot: Path) -> None:
    """The LR range test's suggested max LR and where its plot went."""
    console.print(f"suggested max LR: [bold]{suggestion:.3g}[/]  (plot: {plot})")


# ----------------------------------------------------------------------------- sweep
def sweep_summary(outcome, study: str, counts: dict[str, int], best) -> None:
    """New trials and totals, the best trial, the champion's refit, the reference recipe and
    the finalists' race of a finished ``sweep`` call."""
    from cifar_hpo.sweep.ranking import primary_value

    console.print(
        f"study [bold]{study}[/]: {len(outcome.new_trials)} new trials; totals: "
        + ", ".join(f"{k.lower()} {v}" for k, v in counts.items() if v)
    )
    record = StudyRecord(outcome.study)
    if best is not None:
        version = record.champion_version(best.number)
        test = TrialRecord(best).test_acc  # None where budget.search_test is false
        console.print(
            f"best trial {best.number}: {primary_value(best):.4f} ("
            + ("" if test is None else f"test acc {test:.4f}, ")
            + f"registry version {'-' if version is None else version})"
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


# ----------------------------------------------------------------------------- studies
def study_list(rows: list[tuple[str, dict[str, int], tuple[str, str]]]) -> None:
    """Stored studies: ``rows`` of (name, trial counts per state, (best value, best trial))."""
    table = Table(title="studies")
    for col in ("study", "complete", "pruned", "fail", "running", "best value", "best trial"):
        table.add_column(col, justify="left" if col == "study" else "right")
    for name, counts, best_cells in rows:
        table.add_row(
            name,
            str(counts["COMPLETE"]),
            str(counts["PRUNED"]),
            str(counts["FAIL"]),
            str(counts["RUNNING"]),
            *best_cells,
        )
    console.print(table if rows else "no studies stored yet")


def leaderboard(board) -> None:
    """A study's ranked trials (``sweep.leaderboard.Leaderboard``); infeasible rows in red."""
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
        row += [sig(e.values[n]) for n in names] + [sig(e.key) for _ in extra]
        if board.multi_objective:
            row.append("yes" if e.pareto else "")
        row += [sig(e.trial.params.get(p)) for p in board.param_names]
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


def pareto_front(study: str, rows: list[dict]) -> None:
    """The Pareto front of a multi-objective study (``sweep.ranking.front_rows``)."""
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
                cells.append(str(v))  # trial numbers and run ids, without separators
        table.add_row(*cells)
    console.print(table)


def best(study: str, best, metric: str, chosen: bool) -> None:
    """The champion or chosen trial (``sweep.best.BestTrial``): value, measures, params, its
    refit, the reference recipe, the finalists' race, MLflow run and registry version."""
    title = f"{'chosen' if chosen else 'best'} trial of {study}: #{best.number}"
    table = Table(title=title, show_header=False)
    table.add_row(metric, f"{best.value:.4f}")
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


def exported(path: Path) -> None:
    """Where ``best --export`` wrote the model."""
    console.print(f"exported to [bold]{path}[/] (torch.export; see README 'Exported models')")


# ----------------------------------------------------------------------------- compare
def _delta(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    color = "green" if value > 0 else "red" if value < 0 else "dim"
    return f"[{color}]{value:+.{digits}f}[/]"


def comparison(cmp) -> None:
    """Champion vs challenger (``sweep.compare.Comparison``): per-class deltas, costs side by
    side, disagreements, McNemar's test, confusion changes, notes and where it was logged."""
    console.print(f"champion:   {escape(cmp.champion.title)}")
    console.print(f"challenger: {escape(cmp.challenger.title)}")
    _class_deltas(cmp)
    _costs(cmp)
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


def _class_deltas(cmp) -> None:
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


def _costs(cmp) -> None:
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


# ----------------------------------------------------------------------------- predict, serve
def predictions(preds, top_k: int) -> None:
    """One tab-separated line per image (path, class, confidence), no wrapping, so a script
    can cut the columns; with ``top_k`` > 1 the runners-up in parentheses."""
    for p in preds:
        extra = ""
        if top_k > 1:
            extra = "  (" + ", ".join(f"{n} {c:.2f}" for n, c in p.top) + ")"
        typer.echo(f"{p.path}\t{p.label}\t{p.confidence:.4f}{extra}")


def dashboard_ready(url: str, storage: str) -> None:
    """The dashboard's address, once it listens."""
    console.print(
        f"optuna-dashboard on [bold]{url}[/] (storage {storage}); Ctrl-C stops it",
        highlight=False,
        soft_wrap=True,
    )


# ----------------------------------------------------------------------------- reproduce
def readme_table(outcome) -> None:
    """The batch ``reproduce`` wrote (``reproduce.ReproduceOutcome``) and where it went."""
    table = Table(title=f"readme-table (batch {outcome.parent_run_id[:8]})")
    for col in ("recipe", "status", "test top-1", "minutes"):
        table.add_column(col, justify="left" if col in ("recipe", "status") else "right")
    for row in outcome.table.rows:
        acc = row.metric("test_acc")
        table.add_row(
            row.recipe,
            row.status,
            pct(acc),
            minutes(row.metric("seconds") if acc is not None else None),
        )
    console.print(table)
    where = "inserted a section with the markers into" if outcome.markers_inserted else "rewrote"
    console.print(f"{where} {outcome.readme}; plots: {', '.join(map(str, outcome.plots.values()))}")
