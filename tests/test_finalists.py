"""Sweep value: complete-schedule search fidelity, the finalists' race on seeds, and the
significance gate that keeps the reference recipe as champion unless a challenger beats it."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from helpers import TINY_SWEEP_BASE
from mlflow.tracking import MlflowClient

from cifar_hpo.stats import pack_correct
from cifar_hpo.sweep.champion import reconcile_champion
from cifar_hpo.sweep.finalists import RACE_ATTR, Arm, decide, pick_finalists, race
from cifar_hpo.sweep.objective import Objective
from cifar_hpo.sweep.plan import plan_sweep
from cifar_hpo.sweep.race_plan import FinalistPlan, plan_finalists
from cifar_hpo.sweep.refit import RefitResult
from cifar_hpo.sweep.spec import build_pruner, parse_spec
from cifar_hpo.tracking import NullTracker, Tracker

# Two recipes on the tiny data (seed 0): FAST learns in epoch 1, then its step schedule cuts
# the LR 1000x and it stays there (~70 %); SLOW warms up for 90 % of its OneCycle schedule
# (~30 % at epoch 1) and ends near 90 %.
FAST = {"schedule.name": "step"}
SLOW = {"schedule.name": "onecycle"}
SLOW_START_SPEC = {
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "base": {
        **TINY_SWEEP_BASE,
        "optim.name": "adam",
        "optim.lr": 0.003,
        "schedule.step_size": 1,
        "schedule.gamma": 0.001,
        "schedule.pct_start": 0.9,
        "schedule.div_factor": 100000.0,
    },
    "budget": {"epochs": 4},
    "space": {"schedule.name": {"type": "categorical", "choices": ["step", "onecycle"]}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    "top_k_models": 0,
    "enqueue": [FAST, SLOW],
}


def _search(spec_values, data):
    spec = parse_spec(spec_values)
    study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))
    for params in spec.enqueue:
        study.enqueue_trial(params)
    objective = Objective(spec, data, "slow-start", checkpoints=False, evaluate_test=False)
    study.optimize(objective, n_trials=2, catch=(Exception,))
    return study


@pytest.mark.slow
def test_a_slow_starter_that_ends_best_survives_the_first_decision(tiny_data):
    """Mid-schedule successive halving prunes SLOW at epoch 1 although it ends best; with
    ``budget.fidelity: complete`` every trial trains its whole schedule, SLOW ranks first and
    is the first finalist."""
    mid = _search(SLOW_START_SPEC, tiny_data)
    fast, slow = mid.trials
    assert fast.state.name == "COMPLETE"
    assert slow.state.name == "PRUNED" and slow.user_attrs["pruned_at_epoch"] == 1
    assert slow.intermediate_values[1] < fast.intermediate_values[1]  # it started slower
    assert mid.trials[1].user_attrs["fidelity"]["mechanism"] == "mid-schedule"

    complete = _search(
        {**SLOW_START_SPEC, "budget": {"epochs": 4, "fidelity": "complete"}}, tiny_data
    )
    fast, slow = complete.trials
    assert [t.state.name for t in complete.trials] == ["COMPLETE", "COMPLETE"]
    assert slow.intermediate_values[1] < fast.intermediate_values[1]  # same slow start
    assert slow.value > fast.value  # and it ends best
    assert pick_finalists(complete, 1)[0].number == slow.number
    assert slow.user_attrs["fidelity"] == {
        "phase": "search",
        "mechanism": "complete",
        "epochs": 4,
        "train_fraction": 1.0,
    }


def _trial(study, lr: float, value: float, enqueued: bool = False):
    dist = {"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)}
    study.add_trial(
        optuna.trial.create_trial(
            params={"optim.lr": lr},
            distributions=dist,
            value=value,
            system_attrs={"fixed_params": {"optim.lr": lr}} if enqueued else {},
        )
    )


def _base():
    spec = parse_spec(
        {
            "base": dict(TINY_SWEEP_BASE),
            "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
        }
    )
    return spec.base_config()


@pytest.mark.slow
def test_finalists_race_on_seeds_and_the_champion_is_the_best_mean(tiny_data):
    study = optuna.create_study(direction="maximize")
    _trial(study, 0.01, 0.5, enqueued=True)  # the reference recipe
    _trial(study, 0.05, 0.8)
    _trial(study, 0.05, 0.7)  # same configuration as the best: not a second finalist
    _trial(study, 0.02, 0.6)
    _trial(study, 0.003, 0.1)
    plan = FinalistPlan(finalists=2, seeds=2, epochs=1.0, reference=True, run_s=1.0)
    base = _base()
    out = race(study, base, tiny_data, plan, tracker=NullTracker(), parent_run_id=None,
               holdout=True, alpha=0.05)  # fmt: skip
    by_trial = {a.trial.number: a for a in out.arms}
    assert sorted(by_trial) == [0, 1, 3]  # 2 finalists (distinct params) + the reference
    assert by_trial[0].reference and not by_trial[1].reference
    for arm in out.arms:
        assert [r.seed for r in arm.runs] == [base.seed, base.seed + 1]
        assert all(r.epochs == 1.0 and r.test_acc is not None for r in arm.runs)
        assert arm.correct is not None and arm.correct.shape == (len(tiny_data.test_labels),)
    means = {n: np.mean([r.val_acc for r in a.runs]) for n, a in by_trial.items()}
    assert out.champion.trial.number == max(means, key=lambda n: (means[n], -n))
    record = study.user_attrs[RACE_ATTR]
    assert record["champion_trial"] == out.champion.trial.number
    assert record["selected_on"] == "validation" and len(record["arms"]) == 3
    for arm in record["arms"]:  # seconds per run: bench/sweep_value.py scales the recipe by them
        assert arm["epochs"] == [1.0, 1.0] and len(arm["seconds"]) == 2
        assert all(s > 0 for s in arm["seconds"])
    assert study.user_attrs["refit"]["trial"] == out.promoted.trial.number
    assert study.user_attrs["refit"]["promoted"] is True


def _arm(number, accs, correct, reference=False):
    trial = optuna.trial.create_trial(params={}, distributions={}, value=0.0)
    trial.number = number
    runs = [
        RefitResult(number, None, None, 1.0, None, acc, 0.0, 1.0, seed=i)
        for i, acc in enumerate(accs)
    ]
    return Arm(trial, reference, runs, np.asarray(correct, bool))


def test_decide_promotes_only_a_significantly_better_challenger():
    n = 1000
    ref_correct = np.zeros(n, bool)
    ref_correct[:800] = True
    better = ref_correct.copy()
    better[800:860] = True  # 60 images only the challenger gets right, none the other way
    ref = _arm(0, [0.80, 0.801, 0.799], ref_correct, reference=True)
    strong = _arm(1, [0.86, 0.861, 0.859], better)
    out = decide([strong, ref], holdout=False, alpha=0.05)
    assert out.promoted is strong and out.comparison.significant
    assert out.comparison.welch is not None and out.comparison.welch.low > 0
    assert "beats the recipe significantly" in out.summary

    close = ref_correct.copy()
    close[800:803] = True  # +0.3 points: not significant
    weak = _arm(2, [0.803, 0.79, 0.81], close)
    out = decide([weak, ref], holdout=False, alpha=0.05)
    assert out.champion is weak and out.promoted is ref and not out.comparison.significant
    assert out.summary.startswith("no configuration beat the recipe significantly: +")
    assert "p = " in out.summary and "champion: the recipe (trial 0)" in out.summary


@pytest.mark.slow
def test_a_challenger_not_significantly_better_leaves_the_reference_as_champion(tiny_data):
    """Through MLflow: the race logs only the promoted arm's model, and the registry's
    ``champion`` alias points at the reference recipe's refit."""
    tracker = Tracker()
    study = optuna.create_study(study_name="gate", direction="maximize")
    _trial(study, 0.01, 0.5, enqueued=True)
    _trial(study, 0.0101, 0.9)  # the search's best: the recipe with 1 % more LR
    plan = FinalistPlan(finalists=1, seeds=1, epochs=1.0, reference=True, run_s=1.0)
    out = race(study, _base(), tiny_data, plan, tracker=tracker, parent_run_id=None,
               holdout=False, alpha=0.05)  # fmt: skip
    assert not out.comparison.significant and out.promoted.reference
    assert out.comparison.mcnemar.p_value > 0.05
    reconcile_champion(study, tracker)
    client = MlflowClient()
    champion = client.get_model_version_by_alias("cifar-hpo-gate", "champion")
    reference_run = client.get_run(out.promoted.runs[0].run_id)
    assert reference_run.data.tags["cifar_hpo.role"] == "refit-reference"
    assert reference_run.data.tags["cifar_hpo.phase"] == "finalist"
    assert champion.tags["cifar_hpo.model_id"] == study.user_attrs["refit"]["model_id"]
    assert champion.tags["cifar_hpo.model_id"] == reference_run.data.tags["cifar_hpo.model_id"]
    challenger = next(a for a in out.arms if not a.reference)
    challenger_run = client.get_run(challenger.runs[0].run_id)
    assert "cifar_hpo.model_id" not in challenger_run.data.tags  # not promoted: no model
    assert study.user_attrs[RACE_ATTR]["arms"][0]["correct"] == pack_correct(out.arms[0].correct)


def test_plan_finalists_fits_the_time_lowering_finalists_then_seeds_before_epochs():
    full = plan_finalists(10_000, 10.0, 5.0, finalists=3, seeds=3, reference=True, epochs=20)
    assert (full.finalists, full.seeds, full.epochs) == (3, 3, 20)
    assert full.runs == 12 and full.seconds == pytest.approx(12 * 205.0)
    tight = plan_finalists(2_000, 10.0, 5.0, finalists=3, seeds=3, reference=True, epochs=20)
    assert tight.seconds <= 2_000 and tight.epochs == 20
    assert (tight.finalists, tight.seeds) == (2, 3)  # seeds kept: they make the interval
    assert tight.notes and "race lowered from 3 finalists x 3 seeds" in tight.notes[0]
    # the minimum epochs keep priority over the wanted ones
    short = plan_finalists(1_000, 10.0, 5.0, finalists=2, seeds=2, reference=True, epochs=20,
                           min_epochs=10)  # fmt: skip
    assert short.epochs >= 10 and short.seconds <= 1_000
    # the 60-minute baseline on a 999 images/s CPU: 1 finalist x 2 seeds (an interval) at 10.5
    # epochs rather than 2 finalists x 1 seed (no interval) at 14
    baseline = plan_finalists(2_136, 50.05, 8.0, finalists=2, seeds=2, reference=True,
                              epochs=20, min_epochs=10)  # fmt: skip
    assert (baseline.finalists, baseline.seeds) == (1, 2) and baseline.epochs >= 10
    none = plan_finalists(100, 10.0, 5.0, finalists=2, seeds=2, reference=False, epochs=20)
    assert (none.finalists, none.seeds) == (1, 1) and none.epochs == 9.5


def test_a_reference_recipe_faster_than_the_finalist_leaves_the_race_more_epochs():
    # the 60-minute baseline's race on a 2-core EPYC: a width-1.23 finalist at 652 images/s
    # (76.7 s an epoch) and the recipe at 912 (54.8 s): planned at the finalist's speed the
    # race got 13.2 epochs and left ~8 of its 34.7 min unused
    same = plan_finalists(2_082, 76.7, 15.0, finalists=2, seeds=2, reference=True, epochs=20,
                          min_epochs=10)  # fmt: skip
    own = plan_finalists(2_082, 76.7, 15.0, finalists=2, seeds=2, reference=True, epochs=20,
                         min_epochs=10, reference_epoch_s=54.8)  # fmt: skip
    assert (same.finalists, same.seeds, same.epochs) == (1, 1, 13.3)
    assert (own.finalists, own.seeds) == (1, 1) and own.epochs == 15.6
    assert own.seconds == pytest.approx(15.6 * 76.7 + 15.0 + 15.6 * 54.8 + 15.0)
    assert own.seconds <= 2_082 and own.seconds > 0.99 * 2_082 - 131.5 * 0.1
    assert own.arm_run_s(True) == pytest.approx(15.6 * 54.8 + 15.0)
    assert own.arm_run_s(False) == own.run_s == pytest.approx(15.6 * 76.7 + 15.0)
    assert "(~20.2 min a run) + the reference recipe x 1 seeds (~14.5 min a run)" in own.line()
    assert own.line().endswith("= 2 runs = ~34.7 min")
    # the same speed given twice plans, and prints, as one speed
    twice = plan_finalists(2_082, 76.7, 15.0, finalists=2, seeds=2, reference=True, epochs=20,
                           min_epochs=10, reference_epoch_s=76.7)  # fmt: skip
    assert twice == same and "runs of ~" in twice.line()


def test_the_plan_keeps_the_budget_with_finalists_and_seeds():
    kwargs = dict(
        images_per_sec={"airbench94": 900.0},
        epochs=4,
        train_images=45_000,
        train_fraction=0.5,
        val_images=5_000,
        tta_passes=2,
        pruner="successive_halving",
        min_resource=1,
        reduction_factor=3,
        refit_epochs=10,
        refit_share=0.5,
        refit_runs=2,
        refit_holdout=False,
        finalists=3,
        seeds=2,
        fidelity="complete",
    )
    plan = plan_sweep(3600.0, **kwargs)
    assert plan.search_s + plan.refit_s <= 3600.0
    assert plan.race.seconds <= plan.refit_s and plan.race.reference
    assert plan.refit_runs == plan.race.runs == (plan.race.finalists + 1) * plan.race.seeds
    assert plan.rungs == [4]  # complete schedules: no mid-schedule rung
    lines = "\n".join(plan.lines())
    assert f"finalists: {plan.race.finalists} x {plan.race.seeds} seeds x" in lines
    assert "complete schedules, ranked where they end" in lines
    assert math.isclose(plan.trial_s, 4 * (22_500 / 900 + 10_000 / 2700) + 2.0, rel_tol=1e-6)
