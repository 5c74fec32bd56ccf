"""`cifar-hpo reproduce` / `make reproduce-readme-table` on a tiny synthetic budget.

Recipes and budgets as data, schedule fitting, study recipes, README marker rewriting, the
table read back from MLflow (every number checked against the runs' metrics), the plots, the
Makefile knobs, and the pruning benchmark end to end.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow_tables import copy_mlflow_tables
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.config import ConfigError, TrainConfig
from cifar_hpo.data import DatasetError
from cifar_hpo.models import count_parameters, create_model
from cifar_hpo.provenance import cpu_features
from cifar_hpo.reproduce import (
    Budget,
    fit_schedule,
    load_recipes,
    markers,
    plan_runs,
    rewrite_readme,
)
from cifar_hpo.reproduce.table import COLUMNS, sweep_trials
from cifar_hpo.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

RECIPES = {
    "defaults": {
        "device": "cpu",
        "amp": "off",
        "eval_batch_size": 200,
        "data.val_fraction": 0.2,
    },
    "recipes": [
        {
            "name": "tiny-cnn",
            "project": "seed000",
            "epochs": 4,
            "cpu": {"epochs": 2},
            "reported": {"metric": "test_acc", "value": 0.8133, "text": "81.33 % test"},
            "config": {
                "seed": 42,
                "model.name": "seed000_cnn",
                "optim.name": "adam",
                "optim.lr": 0.001,
                "optim.wd": 0.0,
                "batch_size": 32,
                "schedule.name": "plateau",
                "augment.policy": "flip-crop",
            },
        },
        {
            "name": "tiny-es",
            "project": "seed001",
            "epochs": 3,
            "cpu": {"epochs": 3, "train_fraction": 0.5},
            "reported": {"metric": "best_val_loss", "value": 0.8277, "text": "val loss 0.8277"},
            "config": {
                "model.name": "seed001_cnn",
                "optim.name": "adam",
                "optim.lr": 0.001,
                "batch_size": 32,
                "schedule.name": "constant",
                "augment.policy": "none",
                "early_stopping.patience": 2,
            },
        },
        {
            "name": "tiny-c100",
            "project": "seed003",
            "epochs": 50,
            "cpu": {"epochs": 1},
            "config": {"data.dataset": "cifar100", "model.name": "seed001_cnn"},
        },
        {
            "name": "study-best",
            "project": "baseline study",
            "study": "baseline",
            "epochs": 10,
            "cpu": {"epochs": 2},
        },
    ],
}
README = """# A project

Intro text that must survive.

<!-- RESULTS:readme-table -->
a stale table
<!-- /RESULTS:readme-table -->

## Development

Closing text.
"""


@pytest.fixture
def project(tmp_path, data_dir, monkeypatch, mlflow_tables):
    """A project folder: recipes file, README copy with markers, default MLflow/Optuna stores;
    CIFAR-100 is absent and its download fails at once (as offline)."""
    copy_mlflow_tables(mlflow_tables, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CIFAR_HPO_COMMAND", "make reproduce-readme-table")

    def no_download(name, data_dir):
        raise DatasetError(f"{name} not found in {data_dir}/ and download failed (offline)")

    monkeypatch.setattr("cifar_hpo.data.load.download_torchvision", no_download)
    (tmp_path / "recipes.yaml").write_text(yaml.safe_dump(RECIPES, sort_keys=False))
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def reproduce(*args: str):
    result = runner.invoke(
        app,
        ["reproduce", "--recipes", "recipes.yaml", "--readme", "README.md", "--no-progress"]
        + list(args),
    )
    assert result.exit_code == 0, result.output
    return result


def block(text: str) -> str:
    start, end = markers()
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in block(text).splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert tuple(header) == COLUMNS
    assert set(lines[1].strip("|").split("|")) <= {"---", "---:"}
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def recipe_runs(client: MlflowClient) -> dict[str, list]:
    exp = client.get_experiment_by_name("readme-table")
    runs = client.search_runs(
        [exp.experiment_id], "tags.`cifar_hpo.role` = 'recipe'", order_by=["attributes.start_time"]
    )
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.data.tags["cifar_hpo.recipe"], []).append(r)
    return out


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_reproduce_writes_the_table_from_the_mlflow_runs(project):
    client = MlflowClient()
    exp = client.create_experiment("cifar-hpo/quick")  # two sweep trials for the scatter plot
    for acc, params in ((0.4, 1e5), (0.5, 3e5)):
        run = client.create_run(exp, tags={"cifar_hpo.role": "trial"})
        client.log_metric(run.info.run_id, "test_acc", acc)
        client.log_metric(run.info.run_id, "num_params", params)
    reader = Tracker()  # the table reads MLflow through the tracking layer
    assert sorted(sweep_trials(reader)) == [("quick", 1e5, 0.4), ("quick", 3e5, 0.5)]
    reproduce()
    text = (project / "README.md").read_text()
    start, end = markers()
    assert text.split(start)[0] == README.split(start)[0]  # outside the markers: untouched
    assert text.split(end)[1] == README.split(end)[1]
    rows = table_rows(text)
    assert [r["recipe"] for r in rows] == [f"`{r['name']}`" for r in RECIPES["recipes"]]
    runs = recipe_runs(client)
    # the machine line names the CPU features that decide precision and speed
    assert f"; CPU features: {cpu_features()}. MLflow: experiment" in text

    # trained rows: every number is the run's metric, formatted
    for row, epochs, train_images in ((rows[0], "2 / 4", 240), (rows[1], "3 / 3", 120)):
        (run,) = runs[row["recipe"].strip("`")]
        m = run.data.metrics
        assert run.info.status == "FINISHED"
        assert row["test top-1"] == f"{100 * m['test_acc']:.2f} %"
        assert row["top-5"] == f"{100 * m['test_top5']:.1f} %"
        assert row["macro F1"] == f"{m['test_f1_macro']:.4f}"
        assert row["params"] == f"{int(m['num_params']):,}"
        assert row["MACs"] == f"{m['macs'] / 1e6:.1f} M"
        assert row["epochs run / source's"] == epochs
        assert row["train images"] == f"{train_images:,}" == f"{int(m['train_images']):,}"
        assert row["minutes"] == f"{m['seconds'] / 60:.1f}"
        assert row["images/s"] == f"{m['train_images_per_sec']:,.0f}"
        assert row["dataset"] == "cifar10"
        assert row["device"] == run.data.tags["cifar_hpo.device"]
        # per-epoch metrics are logged with step = epoch
        steps = [p.step for p in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == list(range(1, int(m["epochs_run"]) + 1))
    cnn = runs["tiny-cnn"][0]
    assert rows[0]["model"] == "`seed000_cnn`"
    assert int(cnn.data.metrics["num_params"]) == count_parameters(create_model("seed000_cnn"))
    assert cnn.data.params["seed"] == "42" and cnn.data.params["schedule.name"] == "plateau"
    (dataset,) = cnn.inputs.dataset_inputs  # the dataset, as MLflow's Dataset column shows it
    assert dataset.dataset.name == "cifar10"
    assert rows[0]["source reports"] == "81.33 % test"
    assert rows[0]["ours, same metric"] == rows[0]["test top-1"] + " test"
    es = runs["tiny-es"][0]
    losses = [p.value for p in client.get_metric_history(es.info.run_id, "val_loss")]
    assert rows[1]["source reports"] == "val loss 0.8277"
    assert rows[1]["ours, same metric"] == f"val loss {min(losses):.4f}"

    # skipped rows say why, in a note
    body = block(text)
    assert rows[2]["test top-1"].startswith("skipped") and rows[2]["dataset"] == "cifar100"
    assert rows[2]["epochs run / source's"] == "- / 50"
    assert "`tiny-c100` skipped: cifar100 not found" in body
    assert rows[3]["test top-1"].startswith("skipped")
    assert "`study-best` skipped: unknown study 'baseline'" in body
    assert runs["tiny-c100"][0].data.tags["cifar_hpo.status"] == "skipped"

    # provenance and plots
    assert "Command: `make reproduce-readme-table`" in body
    assert "Budget: default CPU budget" in body
    for lib in ("torch ", "optuna ", "mlflow "):
        assert lib in body
    assert re.search(r"finished \d{4}-\d\d-\d\d \d\d:\d\d UTC; commit `[^`]+`", body)
    for name in ("per_class_f1.png", "accuracy_vs_params.png"):
        path = project / "docs" / name
        assert path.is_file() and path.stat().st_size > 5000
        assert f"](docs/{name})" in body
    parent_id = cnn.data.tags["cifar_hpo.batch"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["cifar_hpo.role"] == "table"
    assert parent_id in body
    logged = Path(client.download_artifacts(parent_id, "readme_table.md", str(project)))
    assert logged.read_text().strip() == body.strip()

    # a second batch on the same machine gives the same accuracies; --only keeps just those
    reproduce("--only", "tiny-cnn")
    again = table_rows((project / "README.md").read_text())
    assert [r["recipe"] for r in again] == ["`tiny-cnn`"]
    for col in ("test top-1", "top-5", "macro F1", "params", "epochs run / source's"):
        assert again[0][col] == rows[0][col]

    # --table-only rewrites the same block from the latest batch without training
    before = (project / "README.md").read_text()
    (project / "README.md").write_text(README)
    reproduce("--table-only")
    assert (project / "README.md").read_text() == before
    assert len(recipe_runs(client)["tiny-cnn"]) == 2


# ----------------------------------------------------------------------------- recipes
def epoch_reported_recipe_runs(client: MlflowClient) -> list:
    """Recipe runs of ``readme-table`` that logged an epoch; [] while the store is busy.

    This reader polls the sqlite store while the subprocess writes it; under a loaded machine
    a read can outlast sqlite's 5-second busy timeout, which says nothing about the product."""
    if not Path("mlflow.db").exists():
        return []
    try:
        exp = client.get_experiment_by_name("readme-table")
        if exp is None:
            return []
        runs = client.search_runs([exp.experiment_id], "tags.`cifar_hpo.role` = 'recipe'")
    except (MlflowException, OperationalError) as err:
        if "locked" not in str(err):
            raise
        return []
    return [r for r in runs if "train_loss" in r.data.metrics]


def test_sigterm_marks_the_batch_and_its_recipe_run_killed(project):
    exe = Path(sys.executable).parent / "cifar-hpo"
    cmd = [str(exe), "reproduce", "--recipes", "recipes.yaml", "--only", "tiny-cnn"]
    cmd += ["--epochs", "300", "--no-progress"]  # runs for many minutes unless stopped
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient()
    deadline, running = time.monotonic() + 300, []
    while not running and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(2)
        running = epoch_reported_recipe_runs(client)
    assert running, "the recipe run never reported an epoch"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    (run,) = running
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["cifar_hpo.status"] == "failed"
    assert client.get_run(run.data.tags["cifar_hpo.batch"]).info.status == "KILLED"
    assert (project / "README.md").read_text() == README  # left unchanged


def test_shipped_recipes_match_the_seed_readmes(tmp_path):
    book = load_recipes(ROOT / "sweeps" / "recipes.yaml")
    by_name = {r.name: r for r in book.recipes}
    assert {r.project for r in book.recipes} >= {f"seed00{i}" for i in range(5)}
    expected = {  # project: (model, dataset, epochs, reported metric, reported value)
        "seed000": ("seed000_cnn", "cifar10", 25, "test_acc", 0.8133),
        "seed001": ("seed001_cnn", "cifar10", 5, "best_val_loss", 0.8277),
        "seed002": ("cifarnet", "cifar10", 250, "test_acc", 0.8788),
        "seed003": ("resnet18", "cifar100", 50, "best_val_acc", 0.8242),
        "seed004": ("compact200k", "cifar10", 75, "test_acc", 0.85),
        "guide": ("airbench", "cifar10", 10, "test_acc", 0.879),
    }
    store = f"sqlite:///{tmp_path / 'optuna.db'}"  # no baseline study: that recipe is skipped
    full = {p.recipe.project: p for p in plan_runs(book, Budget(kind="full"), storage=store)}
    for project, (model, dataset, epochs, metric, value) in expected.items():
        plan = full[project]
        assert plan.config.model.name == model and plan.config.data.dataset == dataset
        assert plan.config.epochs == epochs == plan.recipe.epochs
        assert (plan.reported.metric, plan.reported.value) == (metric, value)
    seed002 = by_name["seed002-cifarnet"].config
    assert seed002["optim.grad_clip"] == 1.0 and seed002["schedule.name"] == "cosine"
    assert by_name["seed003-resnet18"].config["schedule.div_factor"] == 100
    assert by_name["airbench-guide"].config["tta"] == 1
    assert by_name["baseline-best"].study == "baseline"
    assert "unknown study 'baseline'" in full["baseline study"].skip


def test_budgets_and_schedule_fitting():
    assert Budget.from_options().label == "cpu"
    assert Budget.from_options(epochs=3, train_fraction=0.1).label == "epochs=3,train_fraction=0.1"
    with pytest.raises(ConfigError, match="either --full or --epochs"):
        Budget.from_options(epochs=3, full=True)
    with pytest.raises(ConfigError, match="train-fraction"):
        Budget.from_options(train_fraction=1.5)

    def cfg(**kw):
        return TrainConfig.from_dict({"model.name": "seed000_cnn", **kw})

    plateau = fit_schedule(cfg(**{"schedule.name": "plateau"}), 25, 5, 0.5)
    assert (plateau.epochs, plateau.data.train_fraction) == (5, 0.5)
    assert plateau.schedule.plateau_patience == 0  # 2 * 5/25 rounds to 0
    es = cfg(**{"early_stopping.patience": 2, "schedule.name": "step", "schedule.step_size": 10})
    longer = fit_schedule(es, 10, 20, 1.0)
    assert longer.early_stopping.patience == 4 and longer.schedule.step_size == 20
    shorter = fit_schedule(es, 10, 1, 1.0)
    assert shorter.early_stopping.patience == 1 and shorter.schedule.step_size == 1  # stays on
    warm = cfg(**{"schedule.name": "cosine", "schedule.warmup_epochs": 1.0})
    assert fit_schedule(warm, 10, 5, 1.0).schedule.warmup_epochs == 0.5
    same = fit_schedule(es, 10, 10, 1.0)
    assert same.to_flat() == {**es.to_flat(), "epochs": 10}


def test_plan_runs_applies_the_budget(tmp_path):
    path = tmp_path / "recipes.yaml"
    path.write_text(yaml.safe_dump(RECIPES))
    book = load_recipes(path)
    store = f"sqlite:///{tmp_path / 'optuna.db'}"
    plans = plan_runs(book, Budget.from_options(epochs=3), storage=store)
    trained = [p for p in plans if p.config is not None and p.recipe.study is None]
    assert {(p.config.epochs, p.config.data.train_fraction) for p in trained} == {(3, 1.0)}
    cpu = plan_runs(book, Budget(), only=["tiny-es"], overrides={"eval_batch_size": 50})
    assert [(p.epochs, p.train_fraction) for p in cpu] == [(3, 0.5)]
    assert cpu[0].config.eval_batch_size == 50
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; recipes: tiny-cnn"):
        plan_runs(book, Budget(), only=["nope"])


def test_invalid_recipes_fail_at_load_naming_the_recipe(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(RECIPES))
    bad["recipes"][1]["config"]["optim.lrr"] = 0.1
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="recipe 'tiny-es'.*optim.lrr"):
        load_recipes(tmp_path / "a.yaml")
    bad = yaml.safe_load(yaml.safe_dump(RECIPES))
    bad["recipes"][0]["epochs_typo"] = 3
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"recipes\[tiny-cnn\].epochs_typo: unknown key"):
        load_recipes(tmp_path / "b.yaml")


def test_study_recipe_takes_the_best_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweeps").mkdir()
    spec = {
        "base": {"model.name": "seed000_cnn", "device": "cpu", "optim.label_smoothing": 0.1},
        "budget": {"epochs": 3, "train_fraction": 0.4},
        "space": {
            "optim.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    }
    (tmp_path / "sweeps" / "baseline.yaml").write_text(yaml.safe_dump(spec))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="baseline", storage=storage, direction="maximize")
    dists = {
        "optim.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True),
        "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
    }
    for value, lr in ((0.6, 0.02), (0.7, 0.123)):
        params = {"optim.lr": lr, "model.dropout": 0.25}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPES))
    book = load_recipes(tmp_path / "r.yaml")
    (plan,) = plan_runs(book, Budget(), only=["study-best"], storage=storage)
    c = plan.config
    assert (c.optim.lr, c.model.hparams["dropout"], c.optim.label_smoothing) == (0.123, 0.25, 0.1)
    assert (c.epochs, c.data.train_fraction) == (2, 1.0)  # the recipe's budget, not the study's
    assert plan.reported.text == "70.00 % val (trial 1, 3 ep on 40 %)"
    assert plan.source["cifar_hpo.study_trial"] == "1"


def test_rewrite_readme_inserts_missing_markers_then_replaces(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# T\n\ntext\n\n## Development\n\nend\n")
    assert rewrite_readme(path, "table v1") is True
    text = path.read_text()
    start, end = markers()
    assert text.index(start) < text.index(end) < text.index("## Development")
    assert rewrite_readme(path, "table v2") is False
    text = path.read_text()
    assert "table v2" in text and "table v1" not in text and text.count(start) == 1
    rewrite_readme(path, "table v2")
    assert path.read_text() == text


def test_makefile_target_passes_the_budget_knobs():
    def dry(*args: str) -> str:
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "reproduce-readme-table", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return next(line for line in out.splitlines() if "cifar-hpo reproduce" in line)

    assert dry().endswith("cifar-hpo reproduce --readme docs/results.md --docs docs")
    line = dry("EPOCHS=3", "ONLY=seed000-cnn airbench-guide", "TRAIN_FRACTION=0.2")
    assert "--epochs 3" in line and "--train-fraction 0.2" in line
    assert "--only seed000-cnn --only airbench-guide" in line
    assert "CIFAR_HPO_COMMAND='make reproduce-readme-table EPOCHS=3" in line
    assert "--full" in dry("FULL=1")


# ----------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_pruning_benchmark_runs_both_studies(tmp_path, data_dir):
    spec = {
        "objective": {"metric": "val_acc", "direction": "maximize"},
        "base": {"device": "cpu", "amp": "off", "eval_batch_size": 200, "data.val_fraction": 0.2},
        "budget": {"epochs": 3, "train_fraction": 1.0},
        "space": {
            "model.name": {"type": "categorical", "choices": ["seed001_cnn"]},
            "optim.lr": {"type": "float", "low": 0.0005, "high": 0.5, "log": True},
            "batch_size": {"type": "categorical", "choices": [64]},
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    loader = importlib.util.spec_from_file_location("bench_pruning", ROOT / "bench" / "pruning.py")
    bench = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(bench)
    out = tmp_path / "p.json"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- RESULTS:pruning -->\nold\n<!-- /RESULTS:pruning -->\n")
    s = bench.main(
        [
            "--study",
            str(tmp_path / "tiny.yaml"),
            "--trials",
            "4",
            "--train-fraction",
            "1.0",
            "--json",
            str(out),
            "--readme",
            str(readme),
        ]
    )
    text = readme.read_text()
    assert "old" not in text
    counts = "{COMPLETE} / {PRUNED} / {FAIL}"
    assert f"| complete / pruned / failed | {counts.format(**s['unpruned']['counts'])} | " in text
    assert "Command: `python bench/pruning.py --study" in text and "commit `" in text
    assert "Machine: " in text and "precision fp32" in text
    u, p = s["unpruned"], s["pruned"]
    assert u["counts"]["PRUNED"] == 0 and len(u["trials"]) == len(p["trials"]) == 4
    # same sampler seed: the same configs in the same order
    assert [t["params"] for t in u["trials"]] == [t["params"] for t in p["trials"]]
    assert u["images"] == sum(t["images"] for t in u["trials"]) == 4 * 3 * 192
    for tu, tp in zip(u["trials"], p["trials"], strict=True):
        if tp["state"] == "PRUNED":  # compute up to the prune epoch only
            assert tp["images"] == tp["epochs_run"] * 192 < tu["images"]
        else:
            assert tp["value"] == tu["value"] and tp["images"] == tu["images"]
    c = s["comparison"]
    assert c["reached"] and 0 < c["share_to_reach"] <= 1
    assert c["images_to_reach"] <= p["images"]
    assert out.is_file() and "comparison" in out.read_text()


def test_fractional_epochs_show_in_the_epochs_cell():
    from cifar_hpo.reproduce.table import Row, epochs_cell

    def row(run, source, budget):
        return Row(
            "r",
            "airbench94",
            0,
            "p",
            "completed",
            "",
            "airbench94",
            "cifar10",
            source,
            budget,
            1.0,
            "cpu",
            {"epochs_run": run},
            None,
        )

    assert epochs_cell(row(9.92, 9.9, 9.9)) == "9.92 / 9.9"  # 476 steps of 48 per epoch
    assert epochs_cell(row(3.0, 9.9, 9.9)) == "3 of 9.9 / 9.9"  # stopped early
    assert epochs_cell(row(2.0, 250, 2)) == "2 / 250"


def test_recipe_config_for_train_and_its_errors():
    from cifar_hpo.reproduce.recipes import recipe_config

    assert recipe_config("airbench94", ROOT / "sweeps" / "recipes.yaml").model.name == "airbench94"
    with pytest.raises(ConfigError, match=r"unknown recipe 'nope'; recipes: seed000-cnn, "):
        recipe_config("nope", ROOT / "sweeps" / "recipes.yaml")
    with pytest.raises(ConfigError, match="takes its config from study 'baseline'"):
        recipe_config("baseline-best", ROOT / "sweeps" / "recipes.yaml")


def test_a_recipe_whose_artifacts_fail_ends_failed_and_the_batch_goes_on(project, monkeypatch):
    """An artifact error after training (a full disk): that recipe's run ends FAILED with the
    reason, the batch goes on and ends FINISHED; no run is left RUNNING."""
    from cifar_hpo.tracking import TrialRun

    def broken(self, result):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TrialRun, "log_result", broken)
    reproduce("--only", "tiny-cnn", "--epochs", "1")
    client = MlflowClient()
    exp = client.get_experiment_by_name("readme-table")
    runs = client.search_runs([exp.experiment_id])
    (recipe,) = [r for r in runs if r.data.tags["cifar_hpo.role"] == "recipe"]
    assert recipe.info.status == "FAILED"
    assert "No space left on device" in recipe.data.tags["cifar_hpo.reason"]
    assert [r.info.status for r in runs if r.data.tags["cifar_hpo.role"] == "table"] == ["FINISHED"]
