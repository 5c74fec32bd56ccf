"""A budgeted search stops in time for the race's floor (one finalist and the reference, each
on the spec's seeds, at the race's minimum epochs), at the speeds the trials measured."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from helpers import TINY_SWEEP_BASE

from cifar_hpo.sweep.budget import format_minutes
from cifar_hpo.sweep.objective import TRAIN_SPEED_ATTR
from cifar_hpo.sweep.race_guard import RaceGuard
from cifar_hpo.sweep.race_plan import RACE_RUN_OVERHEAD_S
from cifar_hpo.sweep.spec import parse_spec

TRIAL_S = 100.0  # every fake trial takes this many seconds of the fake clock
REFERENCE_SPEED = 200.0  # images/s of the reference recipe's trial (trial 0)


class FakeClock:
    """A budget clock that only moves when a trial says so."""

    def __init__(self, total_s: float):
        self.total_s, self.used_s = total_s, 0.0

    @property
    def left_s(self) -> float:
        return max(0.0, self.total_s - self.used_s)


def _spec(seeds: int = 3):
    return parse_spec(
        {
            "objective": {"metric": "val_acc", "direction": "maximize"},
            "base": TINY_SWEEP_BASE,
            "budget": {
                "epochs": 2,
                "refit_epochs": 20,
                "refit_min_epochs": 10,
                "refit_reference": True,
                "refit_holdout": False,
            },
            "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
            "refit": {"finalists": 2, "seeds": seeds},
            "enqueue": [{"optim.lr": 0.01}],
        }
    )


def _search(total_s: float, challenger_speed: float, n_trials: int = 30, min_trials: int = 8):
    """Trials of TRIAL_S fake seconds; trial 0 is the reference (the worst), every later
    trial beats the one before and trains at ``challenger_speed``."""
    spec, clock, said = _spec(), FakeClock(total_s), []
    guard = RaceGuard(
        clock,  # type: ignore[arg-type]
        spec,
        SimpleNamespace(images_per_sec={"seed000_cnn": 1e6}),  # type: ignore[arg-type]
        race_images=1000,
        val_images=0,
        test_images=0,
        tta_passes=1,
        trial_s=TRIAL_S,
        say=said.append,
        min_trials=min_trials,
    )
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(spec.enqueue[0])

    def objective(trial):
        trial.suggest_float("optim.lr", 0.001, 0.1, log=True)
        clock.used_s += TRIAL_S
        speed = REFERENCE_SPEED if trial.number == 0 else challenger_speed
        trial.set_user_attr(TRAIN_SPEED_ATTR, speed)
        return 0.5 + 0.001 * trial.number

    study.optimize(objective, n_trials=n_trials, callbacks=[guard])
    return study, guard, clock, said


def _floor_s(challenger_speed: float, seeds: int = 3) -> float:
    # 10 epochs of 1,000 images per run, at each arm's speed, plus the per-run overhead
    runs = [10 * 1000 / s + RACE_RUN_OVERHEAD_S for s in (challenger_speed, REFERENCE_SPEED)]
    return seeds * sum(runs)


@pytest.mark.parametrize(("speed", "trials"), [(100.0, 23), (50.0, 20)])
def test_the_search_stops_while_the_race_floor_still_fits(speed, trials):
    """Budget 3,000 s: the floor (3 seeds x (best + reference) x 10 epochs) needs 630 s at a
    challenger speed of 100 images/s and 930 s at 50, so the slower best stops the search 3
    trials earlier; at the stop the floor still fits in what is left, one more trial would
    not have left it."""
    study, guard, clock, said = _search(3000.0, speed)
    assert len(study.trials) == trials
    need = _floor_s(speed)
    assert guard.floor_seconds(study) == pytest.approx(need)
    left = clock.left_s * 0.97 - 12.0  # the end reserve of a 3,000 s budget
    assert need <= left < need + TRIAL_S
    (line,) = said
    assert f"search stopped at {format_minutes(trials * TRIAL_S)}:" in line
    assert "1 finalist + the reference x 3 seeds x 10 epochs" in line


def test_the_search_runs_on_when_the_floor_never_fits():
    """A budget whose whole time cannot hold the floor: the guard leaves the search to the
    plan's end (the race lowers its seeds instead)."""
    study, _, _, said = _search(600.0, 100.0, n_trials=5, min_trials=1)
    assert len(study.trials) == 5 and said == []


@pytest.mark.parametrize(("min_trials", "trials"), [(2, 2), (3, 30)])
def test_the_search_keeps_its_minimum_trials(min_trials, trials):
    """Budget 900 s: only after trial 2 does the floor (630 s) fit with less than a trial to
    spare. With ``min_trials`` 2 the search stops there; with 3 it may not, and after trial 3
    the floor no longer fits, so the search runs on to its own end (here ``n_trials``)."""
    study, _, _, said = _search(900.0, 100.0, min_trials=min_trials)
    assert len(study.trials) == trials
    assert len(said) == (trials == 2)


def test_the_floor_counts_the_reference_arm_only_when_one_is_raced():
    """Without an enqueued recipe the race has no reference arm: the floor is the best trial's
    runs alone."""
    spec = _spec()
    no_recipe = spec.model_copy(update={"enqueue": []})
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"optim.lr": 0.01},
            distributions={
                "optim.lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
            },
            value=0.6,
            user_attrs={TRAIN_SPEED_ATTR: 100.0},
        )
    )
    plan = SimpleNamespace(images_per_sec={"seed000_cnn": 1e6})
    sizes = dict(race_images=1000, val_images=0, test_images=0, tta_passes=1, trial_s=TRIAL_S)
    one_run = 10 * 1000 / 100.0 + RACE_RUN_OVERHEAD_S
    alone = RaceGuard(FakeClock(1e4), no_recipe, plan, **sizes)  # type: ignore[arg-type]
    assert alone.floor_seconds(study) == pytest.approx(3 * one_run)
    # with the recipe asked for but not yet run, its arm is counted at the best trial's speed
    paired = RaceGuard(FakeClock(1e4), spec, plan, **sizes)  # type: ignore[arg-type]
    assert paired.floor_seconds(study) == pytest.approx(6 * one_run)
