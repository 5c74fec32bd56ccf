"""The leaderboard sorts correctly: ``cifar-hpo studies --study S --top N --sort KEY`` on
single- and 2-objective studies built directly with Optuna (no training), infeasible trials
marked and ranked after the feasible ones, and one-line errors for unknown names."""

from __future__ import annotations

import warnings

import optuna
import pytest
from helpers import fails_with
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console
from typer.testing import CliRunner

from cifar_hpo.cli import app, render
from cifar_hpo.errors import UserError
from cifar_hpo.sweep.leaderboard import leaderboard, objectives, sort_keys
from cifar_hpo.sweep.storage import RUN_ID_ATTR

runner = CliRunner()
DISTS = {
    "optim.lr": FloatDistribution(1e-4, 1.0, log=True),
    "model.name": CategoricalDistribution(["cnn", "resnet"]),
}
# number -> (val_acc, optim.lr, seconds, constraint); trial 3 is the most accurate but infeasible
SINGLE = {
    0: (0.50, 0.01, 30.0, None),
    1: (0.90, 0.10, 20.0, None),
    2: (0.70, 0.05, 10.0, None),
    3: (0.95, 0.20, 40.0, 1.5),
    4: (0.80, 0.03, 50.0, -1.0),
}


def _names(study: optuna.Study, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def single_study(storage=None, name: str = "single") -> optuna.Study:
    """Five COMPLETE trials (one infeasible), then one PRUNED at 0.99 and one FAIL."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    _names(study, ["val_acc"])
    for i, (acc, lr, secs, constraint) in SINGLE.items():
        trial = create_trial(
            value=acc,
            params={"optim.lr": lr, "model.name": "cnn" if i % 2 else "resnet"},
            distributions=DISTS,
            user_attrs={"epochs_run": 4, RUN_ID_ATTR: f"run{i}", "seconds": secs, "note": "x"},
            constraints=None if constraint is None else {"params": constraint},
        )
        study.add_trial(trial)
    pruned = study.ask({"optim.lr": DISTS["optim.lr"]})
    pruned.report(0.99, step=1)  # a pruned trial's value is its last report
    pruned.set_user_attr("epochs_run", 1)
    study.tell(pruned, state=TrialState.PRUNED)
    study.tell(study.ask(), state=TrialState.FAIL)
    return study


def multi_study(storage=None, name: str = "multi", metric_names=True) -> optuna.Study:
    """Accuracy (maximize) against parameter count (minimize); trial 2 is dominated by 0."""
    study = optuna.create_study(
        study_name=name, storage=storage, directions=["maximize", "minimize"]
    )
    if metric_names:
        _names(study, ["val_acc", "params"])
    for acc, params in [(0.90, 1e6), (0.80, 5e5), (0.85, 2e6), (0.95, 3e6)]:
        trial = study.ask({"optim.lr": DISTS["optim.lr"]})
        trial.set_user_attr("seconds", params / 1e5)
        study.tell(trial, [acc, params])
    return study


def numbers(board) -> list[int]:
    return [e.number for e in board.entries]


def test_single_objective_ranks_best_first_and_infeasible_after_the_candidates():
    board = leaderboard(single_study())
    # COMPLETE + feasible by val_acc; then pruned (0.99) and infeasible (0.95) by value; FAIL
    assert numbers(board) == [1, 4, 2, 0, 5, 3, 6]
    assert board.sort_key == "val_acc" and board.descending
    assert [e.rank for e in board.entries] == list(range(1, 8))
    assert [e.feasible for e in board.entries] == [True] * 5 + [False, True]
    assert board.entries[0].values == {"val_acc": 0.90}
    assert board.entries[0].run_id == "run1" and board.entries[0].epochs_run == 4
    assert board.entries[4].state == TrialState.PRUNED and board.entries[4].key == 0.99
    assert board.entries[-1].state == TrialState.FAIL and board.entries[-1].key is None
    assert board.total == 7 and board.infeasible == 1
    assert board.param_names == ["optim.lr", "model.name"]
    assert not board.multi_objective


def test_top_cuts_and_any_numeric_user_attr_sorts():
    study = single_study()
    assert numbers(leaderboard(study, top=2)) == [1, 4]
    assert sort_keys(study) == ["val_acc", "epochs_run", "seconds"]  # "note" is no number
    fastest = leaderboard(study, sort="seconds", top=3, descending=False)
    assert numbers(fastest) == [2, 1, 0] and [e.key for e in fastest.entries] == [10, 20, 30]
    slowest = leaderboard(study, sort="seconds", top=3)  # a user attribute: largest first
    assert numbers(slowest) == [4, 0, 1] and slowest.descending
    worst = leaderboard(study, descending=False)
    assert numbers(worst)[:6] == [0, 2, 4, 1, 3, 5]  # candidates, then infeasible 3, pruned 5
    assert leaderboard(study, params=["model.name"]).param_names == ["model.name"]


def test_minimized_objective_ranks_smallest_first():
    study = optuna.create_study(direction="minimize")
    for loss in [0.3, 0.1, 0.2]:
        study.tell(study.ask(), loss)
    board = leaderboard(study)
    assert board.sort_key == "value" and not board.descending
    assert numbers(board) == [1, 2, 0]


def test_two_objectives_each_in_its_direction_with_the_pareto_front():
    study = multi_study()
    board = leaderboard(study)
    assert [o.name for o in board.objectives] == ["val_acc", "params"]
    assert board.sort_key == "val_acc" and board.multi_objective
    assert numbers(board) == [3, 0, 2, 1]
    assert [e.pareto for e in board.entries] == [True, True, False, True]
    assert board.entries[0].values == {"val_acc": 0.95, "params": 3e6}
    smallest = leaderboard(study, sort="params", top=2)
    assert not smallest.descending and numbers(smallest) == [1, 0]
    unnamed = multi_study(metric_names=False)
    assert [o.name for o in objectives(unnamed)] == ["value_0", "value_1"]
    assert numbers(leaderboard(unnamed, sort="value_1")) == [1, 0, 2, 3]


def test_unknown_sort_key_or_parameter_names_what_is_allowed():
    study = multi_study()
    allowed = "allowed: val_acc, params, seconds"
    with pytest.raises(UserError, match=f"unknown sort key 'acc'.*{allowed}"):
        leaderboard(study, sort="acc")
    with pytest.raises(UserError, match="unknown parameter 'lr'.*allowed: optim.lr"):
        leaderboard(study, params=["lr"])


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def storage(tmp_path, monkeypatch):
    """A SQLite storage with studies ``single`` and ``multi``; a wide console for the tables."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    single_study(url)
    multi_study(url)
    monkeypatch.setattr(render, "console", Console(width=250))
    return url


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_cli_leaderboard_sorts_cuts_and_marks_infeasible(storage):
    result = runner.invoke(app, ["studies", "--storage", storage, "--study", "single"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[1] for r in rows] == ["1", "4", "2", "0", "5", "3", "6"]
    assert rows[0] == ["1", "1", "0.9", "0.1", "cnn", "complete", "4", "run1"]
    assert rows[4][5] == "pruned" and rows[5][5] == "complete, infeasible"
    assert "val_acc ↓" in result.output and "1 infeasible" in result.output

    args = ["studies", "--storage", storage, "--study", "single", "--top", "2"]
    result = runner.invoke(app, [*args, "--sort", "seconds", "--ascending"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[1] for r in rows] == ["2", "1"] and [r[3] for r in rows] == ["10", "20"]
    assert "seconds ↑" in result.output and "top 2 of 7 trials" in result.output


def test_cli_leaderboard_of_a_two_objective_study(storage):
    args = ["studies", "--storage", storage, "--study", "multi", "--sort", "params"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[1] for r in rows] == ["1", "0", "2", "3"]
    assert [r[4] for r in rows] == ["yes", "yes", "", "yes"]  # the Pareto front
    assert "params ↑" in result.output


def test_cli_study_list_still_lists_every_study(storage):
    result = runner.invoke(app, ["studies", "--storage", storage])
    assert result.exit_code == 0, result.output
    rows = {r[0]: r for r in table_rows(result.output)}
    assert rows["single"][1:] == ["5", "1", "1", "0", "0.9000", "1"]
    assert rows["multi"][5:] == ["3 on the Pareto front", "0, 1, 3"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--study", "nosuch"], ["unknown study 'nosuch'", "stored studies: multi, single"]),
        (
            ["--study", "single", "--sort", "acc"],
            ["unknown sort key 'acc'", "allowed: val_acc, epochs_run, seconds"],
        ),
        (["--sort", "val_acc"], ["--sort needs --study S"]),
    ],
)
def test_cli_bad_names_give_one_line(storage, args, fragments):
    fails_with(runner.invoke(app, ["studies", "--storage", storage, *args]), *fragments)
