"""Multi-objective studies, constraints, the Pareto front, export rules and their aliases, on
tiny synthetic data (issue: beyond the peers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from helpers import TINY_SWEEP_BASE, fails_with
from helpers import load_study as load
from helpers import sweep_ok as sweep
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.latency import measure_latency_ms
from cifar_hpo.sweep.measures import time_to_accuracy
from cifar_hpo.sweep.ranking import best_trial, is_feasible, pareto_front, rule_pick
from cifar_hpo.sweep.spec import LimitSpec, parse_spec

runner = CliRunner()

#: seed000_cnn's parameters grow with its width (about 620K at width 1, 160K at 0.5)
MO_SPEC = {
    "objective": [{"metric": "val_acc"}, {"metric": "params"}],
    "base": {**TINY_SWEEP_BASE, "model.name": "seed000_cnn"},
    "budget": {"epochs": 1, "train_fraction": 0.5},
    "space": {
        "model.width": {"type": "float", "low": 0.25, "high": 1.0},
        "optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
    },
    "sampler": {"name": "random", "seed": 3},
    "pruner": {"name": "none"},
    "top_k_models": 1,
}


def write_spec(name: str, spec: dict) -> None:
    Path("sweeps", f"{name}.yaml").write_text(yaml.safe_dump(spec))


def dominates(a, b, directions) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere."""
    signs = [-1 if d == optuna.study.StudyDirection.MAXIMIZE else 1 for d in directions]
    sa = [s * v for s, v in zip(signs, a, strict=True)]
    sb = [s * v for s, v in zip(signs, b, strict=True)]
    return all(x <= y for x, y in zip(sa, sb, strict=True)) and sa != sb


def param_count(width: float) -> int:
    from cifar_hpo.models import create_model

    model = create_model("seed000_cnn", 10, width=width)
    return sum(p.numel() for p in model.parameters())


def test_two_objective_study_ends_with_a_non_dominated_front_logged_and_printed(project):
    write_spec("mo", MO_SPEC)
    sweep("mo", 4)
    study = load("mo")
    assert study.metric_names == ["val_acc", "params"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4
    for t in done:  # the params objective is the model's real parameter count
        assert t.values[1] == param_count(t.params["model.width"])
        assert t.user_attrs["measures"]["val_acc"] == t.values[0]
    front = pareto_front(study)
    assert front
    numbers = {t.number for t in front}
    for a in front:
        for b in front:
            assert not dominates(a.values, b.values, study.directions)
    for t in done:  # every trial off the front is dominated by a front member
        if t.number not in numbers:
            assert any(dominates(f.values, t.values, study.directions) for f in front)
    # the champion is the front's most accurate member
    assert best_trial(study).number == max(front, key=lambda t: (t.values[0], -t.number)).number

    client = MlflowClient()
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    plots = {f.path for f in client.list_artifacts(parent_id, "plots")}
    assert {"plots/pareto_front.png", "plots/param_importances.png"} <= plots
    assert "plots/optimization_history.png" in plots
    summary = json.loads(
        Path(client.download_artifacts(parent_id, "study_summary.json")).read_text()
    )
    assert [row["trial"] for row in summary["pareto_front"]] == [t.number for t in front]
    assert summary["objectives"] == {"val_acc": "MAXIMIZE", "params": "MINIMIZE"}
    table = json.loads(Path(client.download_artifacts(parent_id, "pareto_front.json")).read_text())
    assert table == summary["pareto_front"]
    assert {"trial", "val_acc", "params", "macs", "test_acc", "mlflow_run_id"} <= set(table[0])

    shown = runner.invoke(app, ["best", "--study", "mo"])
    assert shown.exit_code == 0, shown.output
    assert "Pareto front of mo" in shown.output
    for t in front:
        assert f"{t.values[1]:,.0f}" in shown.output


def test_config_only_constraint_ends_the_trial_before_training(project):
    limit = param_count(0.6)
    spec = {
        **MO_SPEC,
        "objective": {"metric": "val_acc"},
        "constraints": {"params": {"max": limit}},
        "enqueue": [
            {"model.width": 1.0, "optim.lr": 0.05},  # too big: never trained
            {"model.width": 0.3, "optim.lr": 0.05},
        ],
    }
    write_spec("small", spec)
    sweep("small", 2)
    study = load("small")
    big, small = study.trials[0], study.trials[1]
    assert big.state.name == small.state.name == "COMPLETE"
    assert big.constraints["params"] > 0 and not is_feasible(big)
    assert big.user_attrs["epochs_run"] == 0 and big.value == 0.0
    assert "params" in big.user_attrs["infeasible"]
    assert small.constraints["params"] <= 0 and small.user_attrs["epochs_run"] == 1
    assert best_trial(study).number == small.number  # even if the big one scored higher
    client = MlflowClient()
    run = client.get_run(big.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_metric_history(run.info.run_id, "val_acc") == []  # no epoch trained
    assert "params" in run.data.tags["cifar_hpo.infeasible"]
    assert "mlflow_model_id" not in big.user_attrs


def test_export_rule_picks_the_best_feasible_trial_and_gets_its_alias(project):
    limit = param_count(0.5)
    spec = {
        **MO_SPEC,
        "rules": {"champion-small": {"params": {"max": limit}}},
        "enqueue": [
            {"model.width": 1.0, "optim.lr": 0.05},
            {"model.width": 0.4, "optim.lr": 0.05},
            {"model.width": 0.3, "optim.lr": 0.02},
        ],
    }
    write_spec("rules", spec)
    sweep("rules", 3)  # the enqueued three: one over the limit, two within
    study = load("rules")
    within = [t for t in study.trials if t.state.name == "COMPLETE" and t.values[1] <= limit]
    expected = max(within, key=lambda t: (t.values[0], -t.values[1], -t.number))
    pick = rule_pick(study, {"params": LimitSpec(max=limit)})
    assert pick.number == expected.number
    # the rule's alias names that trial's model, kept even if it is not among the top 1
    client = MlflowClient()
    version = client.get_model_version_by_alias("cifar-hpo-rules", "champion-small")
    assert version.tags["trial"] == str(expected.number)
    assert version.tags["cifar_hpo.model_id"] == expected.user_attrs["mlflow_model_id"]
    champion = client.get_model_version_by_alias("cifar-hpo-rules", "champion")
    assert champion.tags["trial"] == str(best_trial(study).number)

    out = Path("small.pt2")
    result = runner.invoke(
        app, ["best", "--study", "rules", "--max-params", str(limit), "--export", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"chosen trial of rules: #{expected.number}" in result.output
    exported = torch.export.load(str(out))
    assert exported is not None

    nothing = runner.invoke(app, ["best", "--study", "rules", "--max-params", "10"])
    fails_with(nothing, "no completed feasible trial", "params <= 10")
    bad_trial = runner.invoke(app, ["best", "--study", "rules", "--trial", "99"])
    fails_with(bad_trial, "--trial 99", "not in the study")


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"pruner": {"name": "median"}}, "pruner median needs a single objective"),
        ({"sampler": {"name": "cmaes"}}, "sampler cmaes optimizes one objective"),
        ({"objective": [{"metric": "val_acc"}, {"metric": "val_acc"}]}, "listed twice"),
        ({"objective": [{"metric": "val_acc"}, {"metric": "speed"}]}, "unknown metric 'speed'"),
        (
            {"objective": [{"metric": "val_acc"}, {"metric": "params", "direction": "maximize"}]},
            "params must be minimized",
        ),
        ({"objective": [{"metric": "time_to_acc@2"}]}, "must be in (0, 1)"),
        ({"constraints": {"flops": {"max": 1}}}, "unknown metric 'flops'"),
        ({"constraints": {"params": {}}}, "needs 'max' and/or 'min'"),
        ({"rules": {"champion": {"params": {"max": 1}}}}, "'champion' is taken"),
    ],
)
def test_validation_refuses_unsupported_multi_objective_settings(changes, fragment):
    from cifar_hpo.sweep.spec import SweepSpecError

    with pytest.raises(SweepSpecError) as err:
        parse_spec({**MO_SPEC, **changes}, "sweeps/mo.yaml")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_single_cost_objective_cannot_be_pruned():
    from cifar_hpo.sweep.spec import SweepSpecError

    spec = {**MO_SPEC, "objective": {"metric": "train_seconds"}, "pruner": {"name": "median"}}
    with pytest.raises(SweepSpecError, match="per-epoch validation metric"):
        parse_spec(spec)


def test_time_to_accuracy_rule():
    history = [
        {"epoch": 1, "val_acc": 0.5, "epoch_seconds": 10.0},
        {"epoch": 2, "val_acc": 0.8, "epoch_seconds": 12.0},
        {"epoch": 3, "val_acc": 0.7, "epoch_seconds": 11.0},
    ]
    assert time_to_accuracy(history, 0.8) == 22.0  # first reached at epoch 2
    assert time_to_accuracy(history, 0.5) == 10.0
    assert time_to_accuracy(history, 0.9) == 2 * 33.0  # never: twice the total
    assert time_to_accuracy([], 0.5) == math.inf


def test_limit_violation_sign():
    limit = LimitSpec(max=100)
    assert limit.violation(150) == pytest.approx(0.5) and not limit.holds(150)
    assert limit.violation(80) == pytest.approx(-0.2) and limit.holds(80)
    both = LimitSpec(min=10, max=20)
    assert both.violation(5) > 0 and both.violation(25) > 0 and both.violation(15) <= 0
    assert not both.holds(None)


def test_latency_protocol_is_positive_and_restores_threads():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    threads = torch.get_num_threads()
    model.train()
    ms = measure_latency_ms(model, warmup=2, repeats=5)
    assert 0 < ms < 1000 and math.isfinite(ms)
    assert torch.get_num_threads() == threads and model.training
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency_ms(model, repeats=0)
