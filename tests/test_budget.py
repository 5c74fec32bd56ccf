"""Budgeted sweeps: the duration parser, the plan, the throughput cache, and a budgeted study
on tiny data that ends within its budget with a refit champion that exports."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from helpers import TINY_SWEEP_BASE, load_bench, tiny_config
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.errors import SweepSpecError
from cifar_hpo.export import load_classifier
from cifar_hpo.sweep.budget import BUDGET_ATTR, budget_clock, parse_duration
from cifar_hpo.sweep.plan import (
    MIN_TRAIN_TO_VAL,
    MIN_TRIALS,
    end_reserve,
    plan_sweep,
    successive_halving_rungs,
)
from cifar_hpo.sweep.race_plan import RACE_MARGIN, RACE_RUN_OVERHEAD_S
from cifar_hpo.throughput import ThroughputCache

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("60", 3600)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0m", "-5m", "5x", "30m1h", "1h1h", ""])
def test_parse_duration_refuses_in_one_line(text):
    with pytest.raises(SweepSpecError, match="expected a duration > 0 such as 90s, 45m, 2h"):
        parse_duration(text)


PLAN = dict(
    images_per_sec={"airbench": 3000.0, "resnet20": 800.0},
    epochs=5,
    train_images=45_000,
    train_fraction=0.4,
    val_images=5_000,
    tta_passes=2,
    pruner="successive_halving",
    min_resource=1,
    reduction_factor=3,
    refit_epochs=10,
)


@pytest.mark.parametrize("budget", [120.0, 600.0, 3600.0, 4 * 3600.0])
def test_plan_respects_the_budget(budget):
    plan = plan_sweep(budget, **PLAN)
    assert plan.search_s + plan.refit_s <= budget
    assert plan.expected_trials * plan.trial_s <= plan.search_s
    assert 3 <= plan.epochs <= 5 and plan.rungs == successive_halving_rungs(1, 3, plan.epochs)
    full_epoch = 45_000 / 1900 + 5_000 * 2 / (1900 * 3)  # mean speed 1,900 images/s
    assert plan.refit_epochs <= 10 and plan.refit_epochs * full_epoch <= plan.refit_s
    if plan.train_fraction < 0.4:  # small budgets: fidelity lowered to fit enough trials
        assert plan.expected_trials >= MIN_TRIALS - 1 or plan.train_fraction == 0.05
    assert "\n".join(plan.lines()).startswith("plan: budget")


def test_small_budgets_lower_the_epochs_before_validation_outweighs_training():
    """Validation scores the whole hold-out (with TTA) every epoch whatever the share, so the
    plan lowers the share only while an epoch's training still costs MIN_TRAIN_TO_VAL x its
    validation, then the epochs (to half the spec's, rungs following), then the share again.
    The plan before this lowered the share alone, down to 5 % (trials that mostly validated)."""
    val_s = 5_000 * 2 / (1_900 * 3)  # one validation pass at the mean speed
    floor = MIN_TRAIN_TO_VAL * val_s * 1_900 / 45_000
    mid = plan_sweep(130.0, **PLAN)
    assert mid.train_fraction == pytest.approx(floor)
    assert mid.epochs == 3 and mid.rungs == [1]
    assert any("search epochs lowered from 5 to 3" in n for n in mid.notes)
    assert mid.expected_trials >= MIN_TRIALS - 1
    tiny = plan_sweep(100.0, **PLAN)
    assert tiny.epochs == 3 and 0.05 <= tiny.train_fraction < floor
    big = plan_sweep(3600.0, **PLAN)
    assert big.epochs == 5 and big.train_fraction == 0.4
    one_arch = dict(PLAN, images_per_sec={"airbench": 3000.0}, fidelity="complete")
    complete = plan_sweep(3600.0, **one_arch)  # no trial cut short, so
    assert complete.full_trial_s >= complete.trial_s  # "~N s (an unpruned one up to M s)", M >= N
    assert all(n.startswith("the race needs") for n in big.notes), big.notes  # nothing lowered


def test_a_race_that_needs_less_than_its_share_gives_the_rest_to_the_search():
    """The race at its full size (the spec's finalists x seeds x epochs) keeps RACE_MARGIN x
    its planned seconds plus RACE_RUN_OVERHEAD_S per run; the search gets the rest of the
    refit share. A race that needs the whole share, or was lowered to fit it, keeps it all."""
    race = dict(PLAN, refit_share=0.55, refit_runs=2, finalists=1, seeds=3, refit_min_epochs=10)

    def share_s(budget):
        return (budget - end_reserve(budget)) * 0.55

    roomy = plan_sweep(7200.0, **race)
    assert (roomy.race.runs, roomy.race.epochs, roomy.race.notes) == (6, 10, ())
    kept = RACE_MARGIN * roomy.race.seconds + RACE_RUN_OVERHEAD_S * 6
    assert roomy.refit_s == pytest.approx(kept) and kept < 0.6 * share_s(7200.0)
    assert roomy.search_s == pytest.approx(7200.0 - end_reserve(7200.0) - kept)
    assert any("the search gets the other" in n for n in roomy.notes), roomy.notes
    assert roomy.expected_trials * roomy.trial_s > share_s(7200.0) / 0.55 * 0.45  # more trials
    for budget in (3600.0, 1800.0):  # the race fits without the margin / was lowered
        plan = plan_sweep(budget, **race)
        assert plan.refit_s == pytest.approx(share_s(budget))
        assert not any("the search gets the other" in n for n in plan.notes)
    assert plan.race.notes  # 1800 s: lowered


def test_plan_lowers_fidelity_only_when_too_few_trials_fit():
    big, small = plan_sweep(3600.0, **PLAN), plan_sweep(120.0, **PLAN)
    assert big.train_fraction == 0.4 and not any("lowered" in n for n in big.notes)
    assert small.train_fraction < 0.4 and any("lowered" in n for n in small.notes)
    assert small.trial_s < big.trial_s


def test_throughput_cache_is_reused_and_invalidated(tmp_path, tiny_data, monkeypatch):
    calls = []

    def fake_measure(config, data):
        calls.append(config.model.name)
        return 1000.0 + len(calls)

    cache = ThroughputCache(tmp_path / "throughput.json", measure=fake_measure)
    a = tiny_config(**{"model.name": "seed000_cnn"})
    assert cache.images_per_sec(a, tiny_data) == (1001.0, False)
    assert cache.images_per_sec(a, tiny_data) == (1001.0, True)  # cached, not measured
    b = tiny_config(**{"model.name": "airbench"})  # another model: measured
    assert cache.images_per_sec(b, tiny_data) == (1002.0, False)
    wider = tiny_config(**{"model.name": "airbench", "model.width": 0.5})
    assert cache.images_per_sec(wider, tiny_data)[1] is False  # another config of it
    monkeypatch.setattr("cifar_hpo.throughput.host_text", lambda: "another CPU, 64 cores")
    assert cache.images_per_sec(a, tiny_data) == (1004.0, False)  # another machine
    table = json.loads((tmp_path / "throughput.json").read_text())
    assert len(table) == 2 and calls == ["seed000_cnn", "airbench", "airbench", "seed000_cnn"]


def test_real_probe_measures_training_speed(tiny_data):
    cache = ThroughputCache(Path("unused.json"))
    value = cache.measure(tiny_config(**{"model.name": "seed000_cnn", "batch_size": 32}), tiny_data)
    assert value > 0


def test_resume_keeps_the_budget_left():
    study = optuna.create_study()
    assert budget_clock(study, None) is None  # never budgeted
    study.set_user_attr(BUDGET_ATTR, {"total_s": 100.0, "used_s": 70.0})
    clock = budget_clock(study, None)  # resumed without --budget: the 30 s left
    assert clock.total_s == 100.0 and 29.0 < clock.left_s <= 30.0
    time.sleep(0.2)
    clock.record(study)
    assert study.user_attrs[BUDGET_ATTR]["used_s"] >= 70.2
    assert budget_clock(study, 200.0).left_s == pytest.approx(200.0 - 70.2, abs=0.2)


# Studies that must end within a wall-clock budget share one test process with the tests that
# start worker processes (test_workers.py), so that under `make test`'s two pytest processes
# they never run beside each other and starve one another of the two cores.
WALL_CLOCK = pytest.mark.xdist_group("wall-clock")

SPEC = {
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "base": dict(TINY_SWEEP_BASE),
    "budget": {"epochs": 2, "train_fraction": 1.0, "refit_epochs": 3},
    "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "top_k_models": 1,
}


@pytest.mark.slow
@WALL_CLOCK
def test_budgeted_study_ends_within_its_budget_with_a_refit_champion(project):
    Path("sweeps", "tinyb.yaml").write_text(yaml.safe_dump(SPEC))
    budget = 45.0
    t0 = time.monotonic()
    result = runner.invoke(app, ["sweep", "--study", "tinyb", "--budget", "45s", "--no-progress"])
    elapsed = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    assert elapsed <= budget * 1.05, (elapsed, result.output)
    out = result.output
    assert re.search(r"plan: budget \d+ s = search", out) and "rungs at epochs 1" in out, out
    assert "Downloading artifacts" not in out  # no progress bars inside trial lines
    assert "refit: finalists: " in out and "race: champion: trial" in out, out
    study = optuna.load_study(study_name="tinyb", storage="sqlite:///studies/optuna.db")
    assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 2
    refit = study.user_attrs["refit"]
    race = study.user_attrs["race"]  # no reference recipe: the best mean is the champion
    assert refit["trial"] == race["champion_trial"] == race["promoted_trial"]
    assert refit["epochs"] <= 3
    for t in study.trials:  # each trial's measured speed (what the refit is planned with)
        if t.user_attrs.get("epochs_run"):
            speed = t.user_attrs["train_images_per_sec"]
            assert 0 < speed and speed * t.user_attrs["seconds"] >= t.user_attrs["images_seen"]
    assert study.user_attrs["budget"]["total_s"] == budget
    # the refit run: a child of the study's parent, its model the champion
    client = MlflowClient()
    run = client.get_run(refit["run_id"])
    assert run.data.tags["cifar_hpo.role"] == "refit" and run.info.status == "FINISHED"
    assert run.data.params["data.train_fraction"] == "1.0"
    assert run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    champion = client.get_model_version_by_alias("cifar-hpo-tinyb", "champion")
    assert champion.tags["cifar_hpo.model_id"] == refit["model_id"]
    assert champion.tags["refit"] == "True"
    # cifar-hpo best shows the refit, --export writes it
    shown = runner.invoke(app, ["best", "--study", "tinyb", "--export", "model.pt"])
    assert shown.exit_code == 0, shown.output
    assert "refit" in shown.output and Path("model.pt").is_file()
    model, meta = load_classifier("model.pt")
    assert meta["refit"] is True and meta["trial"] == refit["trial"]
    assert meta["test_acc"] == pytest.approx(refit["test_acc"])
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    # resuming without --budget continues with the budget left, and no more
    used = study.user_attrs["budget"]["used_s"]
    assert used <= budget
    t0 = time.monotonic()
    again = runner.invoke(app, ["sweep", "--study", "tinyb", "--no-progress"])
    assert again.exit_code == 0, again.output
    left = budget - used
    if left <= 0.05 * budget:
        assert "budget is used up" in again.output
    else:
        planned = float(re.search(r"plan: budget (\d+) s", again.output).group(1))
        assert planned <= left + 1
    assert time.monotonic() - t0 <= max(left, 0) + 0.05 * budget + 5  # + the closing summary
    total = optuna.load_study(study_name="tinyb", storage="sqlite:///studies/optuna.db")
    assert total.user_attrs["budget"]["used_s"] <= budget * 1.05 + 5


def test_score_exported_reproduces_the_test_accuracy_without_cifar_hpo(tmp_path, tiny_data):
    """bench/score_exported.py, as a subprocess that never imports cifar_hpo, gives the same
    test accuracy as the core's evaluation of the exported model."""
    import subprocess
    import sys

    from cifar_hpo.data import cache_path, save_cache
    from cifar_hpo.engine import train
    from cifar_hpo.export import export_classifier

    result = train(tiny_config(epochs=2, **{"model.name": "seed000_cnn", "tta": 1}), tiny_data)
    model_file = export_classifier(
        result.model,
        tmp_path / "model.pt",
        class_names=tiny_data.class_names,
        mean=tiny_data.mean,
        std=tiny_data.std,
        tta=1,
        metadata={"test_acc": result.test.metrics["acc"]},
    )
    cache = save_cache(tiny_data, cache_path(tmp_path / "data", "cifar10"))
    script = Path(__file__).resolve().parents[1] / "bench" / "score_exported.py"
    out = tmp_path / "score.json"
    run = subprocess.run(
        [sys.executable, str(script), str(model_file), str(cache), "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    scored = json.loads(out.read_text())
    assert scored["test_acc"] == pytest.approx(result.test.metrics["acc"], abs=1e-9)
    assert scored["images"] == len(tiny_data.test_labels)
    assert "test top-1" in run.stdout and "the file says" in run.stdout


@pytest.mark.slow
@WALL_CLOCK
def test_reference_recipe_is_raced_beside_the_finalists_and_gates_the_champion(project):
    """budget.refit_reference: the reference recipe (the first enqueued config, trial 0) is
    raced beside the finalists with the same epochs and seeds as a refit-reference run; the
    champion is the tuned finalist only if it beats the recipe significantly, else the recipe's
    refit; `best`, the sweep's last lines and the parent run (metrics, race.json) show the
    statistics."""
    spec = {**SPEC, "budget": {**SPEC["budget"], "refit_reference": True, "refit_holdout": False}}
    spec["enqueue"] = [{"optim.lr": 0.01}]
    spec["refit"] = {"finalists": 1, "seeds": 2}
    Path("sweeps", "tinyr.yaml").write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["sweep", "--study", "tinyr", "--budget", "30s", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "then the reference recipe with the same epochs" in result.output
    assert "(hold-out included)" in result.output
    study = optuna.load_study(study_name="tinyr", storage="sqlite:///studies/optuna.db")
    refit, reference = study.user_attrs["refit"], study.user_attrs["reference_refit"]
    race = study.user_attrs["race"]
    assert study.trials[0].params == {"optim.lr": 0.01} and reference["trial"] == 0
    assert reference["epochs"] == refit["epochs"] and reference["test_acc"] is not None
    assert refit["val_acc"] is None and reference["val_acc"] is None  # hold-out trained too
    ref_arm = next(a for a in race["arms"] if a["reference"])
    assert ref_arm["trial"] == 0 and len(ref_arm["test_acc"]) == len(race["arms"][0]["test_acc"])
    assert f"finalists' race: {race['summary']}" in " ".join(result.output.split())
    client = MlflowClient()
    champion = client.get_model_version_by_alias("cifar-hpo-tinyr", "champion")
    assert champion.tags["cifar_hpo.model_id"] == refit["model_id"]
    assert int(champion.tags["trial"]) == race["promoted_trial"] == refit["trial"]
    if race["promoted_reference"]:
        assert refit == reference  # the recipe's refit is the champion
    else:
        assert race["comparison"]["significant"]
    run = client.get_run(reference["run_id"])
    assert run.data.tags["cifar_hpo.role"] == "refit-reference" and run.info.status == "FINISHED"
    assert run.data.metrics["test_acc"] == pytest.approx(reference["test_acc"])
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.metrics["reference_refit_test_acc"] == pytest.approx(reference["test_acc"])
    assert parent.data.metrics["refit_test_acc"] == pytest.approx(refit["test_acc"])
    if race["comparison"] is not None:
        p = race["comparison"]["mcnemar"]["p_value"]
        assert parent.data.metrics["vs_reference_mcnemar_p"] == pytest.approx(p)
    assert parent.data.metrics["champion_is_reference"] == float(race["promoted_reference"])
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert "race.json" in artifacts
    shown = runner.invoke(app, ["best", "--study", "tinyr"])
    assert shown.exit_code == 0 and "reference recipe" in shown.output, shown.output
    assert "race result" in shown.output and "(recipe)" in shown.output


@WALL_CLOCK
def test_sweep_value_compares_the_champion_with_the_recipe_at_equal_and_matched_compute(
    tmp_path, data_dir
):
    """bench/sweep_value.py on tiny data: a budgeted study, the recipe at the champion's
    epochs and the recipe filling the study's wall time, each on 2 seeds; the README block
    holds all three with intervals and McNemar p-values, stamped."""

    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "tinyv.yaml").write_text(yaml.safe_dump(SPEC))
    root = Path(__file__).resolve().parents[1]
    (sweeps / "recipes.yaml").write_text((root / "sweeps" / "recipes.yaml").read_text())
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- RESULTS:sweep-value -->\nstale\n<!-- /RESULTS:sweep-value -->\n")
    bench = load_bench("sweep_value")
    report = bench.main(
        [
            "--study", "tinyv", "--budget", "20s", "--recipe", "seed001-cnn", "--seeds", "2",
            "--sweeps-dir", str(sweeps), "--data-dir", str(data_dir),
            "--workdir", str(tmp_path / "work"), "--readme", str(readme),
            "--recipe-set", "epochs=1", "--recipe-set", "device=cpu",
        ]
    )  # fmt: skip
    assert report["study"]["minutes"] <= 20 * 1.05 / 60 + 0.1
    champion, equal, matched = report["study"]["champion"], report["equal"], report["matched"]
    assert champion["test_acc"] and len(equal["test_acc"]) == len(matched["test_acc"]) == 2
    assert equal["epochs"] == champion["epochs"]
    assert matched["epochs"] > equal["epochs"]  # the study's 20 s hold more than its refit
    text = readme.read_text()
    assert "**Study `tinyv` with `--budget 20s`**" in text
    assert "| recipe at the champion's epochs |" in text and "McNemar p = " in text
    assert "| recipe filling the study's wall time |" in text
    assert "Command: `python bench/sweep_value.py --study tinyv" in text
    assert re.search(r"Targets \(issue 20\): study within \d+ min: met", text), text


def test_sweep_value_stops_in_one_line_when_the_study_left_no_champion():
    """A study that ended without a refit (its budget held none) stops bench/sweep_value.py
    before the recipe arms with one line, instead of a TypeError while writing the block."""
    from collections import Counter

    bench = load_bench("sweep_value")
    study = optuna.create_study()
    empty = bench.champion_arm(study)
    with pytest.raises(
        SystemExit, match=r"study s with --budget 5s ended without a refit champion"
    ):
        bench.require_champion(empty, "s", "5s", Counter({"complete": 2}))
    study.set_user_attr("refit", {"trial": 1, "test_acc": 0.5, "epochs": 2.0})
    bench.require_champion(bench.champion_arm(study), "s", "5s", Counter({"complete": 2}))


def test_compute_matched_epochs_fill_the_wall_time():
    """The recipe's epochs scaled so that one run takes the study's wall time: its seconds
    per epoch and its fixed cost outside epochs, both measured on a run of the recipe."""
    from types import SimpleNamespace

    bench = load_bench("sweep_value")
    run = SimpleNamespace(history=[{"epoch_seconds": 30.0}] * 10, seconds=320.0)  # 20 s fixed
    epochs = bench.compute_matched_epochs(3600.0, run)
    assert epochs == pytest.approx(119.3)
    assert epochs * 30.0 + 20.0 == pytest.approx(3600.0, abs=3.0)  # fills the hour
    with pytest.raises(ValueError, match="without epochs"):
        bench.compute_matched_epochs(60.0, SimpleNamespace(history=[], seconds=1.0))


def test_sweep_value_takes_the_recipe_at_equal_epochs_from_the_race():
    """With --equal-from-race the recipe-at-equal-epochs arm is the race's reference arm (its
    seeds, accuracies and first-seed correctness), and the compute-matched epochs come from
    its seconds per epoch; a race without a reference or without seconds gives None."""
    from cifar_hpo.stats import pack_correct
    from cifar_hpo.sweep.finalists import RACE_ATTR

    bench = load_bench("sweep_value")
    study = optuna.create_study()
    assert bench.race_reference(study) is None
    correct = np.array([True, False, True, True])
    arms = [
        {"trial": 3, "reference": False, "test_acc": [0.91, 0.92], "correct": None,
         "epochs": [10.0, 10.0], "seconds": [700.0, 700.0]},
        {"trial": 0, "reference": True, "test_acc": [0.90, 0.905],
         "correct": pack_correct(correct), "epochs": [10.0, 10.0], "seconds": [600.0, 660.0]},
    ]  # fmt: skip
    study.set_user_attr(RACE_ATTR, {"epochs": 10.0, "arms": arms})
    arm = bench.race_reference(study)
    assert arm["test_acc"] == [0.90, 0.905] and arm["epochs"] == 10.0
    assert arm["correct"].tolist() == correct.tolist()
    assert arm["seconds_per_epoch"] == pytest.approx(63.0)
    assert arm["minutes"] == pytest.approx([10.0, 11.0]) and "trial 0" in arm["source"]
    del arms[1]["seconds"]
    study.set_user_attr(RACE_ATTR, {"epochs": 10.0, "arms": arms})
    assert bench.race_reference(study) is None


def test_refit_is_planned_with_the_best_trials_own_speed_not_the_probe():
    """The refit's epochs come from the speed the best trial's epochs ran at in the search: a
    probe skewed by a busy CPU (seed004's airbench94: 74 images/s probed, ~350 trained) once
    left 21 of 60 minutes unused."""
    from optuna.trial import FrozenTrial, TrialState

    from cifar_hpo.sweep.finalists import refit_speed
    from cifar_hpo.sweep.objective import TRAIN_SPEED_ATTR

    plan = plan_sweep(600.0, **{**PLAN, "images_per_sec": {"airbench94": 74.0, "airbench": 900.0}})

    def trial(attrs):
        return FrozenTrial(
            number=0,
            trial_id=0,
            state=TrialState.COMPLETE,
            value=0.5,
            datetime_start=None,
            datetime_complete=None,
            params={"model.name": "airbench94"},
            distributions={
                "model.name": optuna.distributions.CategoricalDistribution(["airbench94"])
            },
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={},
        )

    assert refit_speed(plan, trial({TRAIN_SPEED_ATTR: 350.0})) == 350.0
    assert refit_speed(plan, trial({})) == 74.0  # no epoch measured: the probe
    assert refit_speed(plan, None) == pytest.approx(487.0)


def test_throughput_probe_keeps_the_base_model_hyperparameters():
    """Switching model.name must not drop the base's model.width: seed004's probe timed
    airbench94 at its default width (1.97M parameters, 74 images/s) instead of 0.3."""
    from types import SimpleNamespace

    from cifar_hpo.sweep.probe import architectures
    from cifar_hpo.sweep.spec import load_spec

    spec = load_spec("seed004_under_200k", Path(__file__).resolve().parents[1] / "sweeps")
    configs = architectures(SimpleNamespace(spec=spec), None)
    assert {c.model.name for c in configs} == {"airbench94", "airbench"}
    assert all(c.model.hparams["width"] == 0.3 for c in configs)
    assert all(c.batch_size == 512 for c in configs)  # the middle batch_size choice


def test_refit_without_holdout_plans_and_trains_on_the_whole_split(tiny_data):
    """budget.refit_holdout false: the refit trains on all of the training split (the
    hold-out too, as a recipe is published: 50,000 CIFAR images), without a validation pass;
    the plan's refit epochs are costed that way. Before, the refit always trained without the
    hold-out (45,000), a handicap against the recipe it is compared with."""
    from cifar_hpo.engine import make_splits
    from cifar_hpo.sweep.refit import refit_best, refit_config
    from cifar_hpo.tracking import NullTracker

    held = plan_sweep(3600.0, **PLAN)
    whole = plan_sweep(3600.0, **{**PLAN, "refit_epochs": 100}, refit_holdout=False)
    assert "(hold-out included)" in "\n".join(whole.lines())
    assert "(validation held out)" in "\n".join(held.lines())
    test_s = 10_000 * 2 / (1_900 * 3)  # one test pass with TTA, forward only
    assert whole.refit_epochs == pytest.approx(
        math.floor((whole.refit_s - test_s) / (50_000 / 1_900) * 10) / 10
    )

    base = tiny_config(**{"data.val_fraction": 0.2})
    full = refit_config(base, {"optim.lr": 0.05}, 1.0, holdout=False)
    assert full.data.val_fraction == 0.0 and full.epochs == 1.0
    assert len(make_splits(full, tiny_data).train_idx) == len(tiny_data.train_labels) == 300
    assert len(make_splits(refit_config(base, {}, 1.0), tiny_data).train_idx) == 240

    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"optim.lr": 0.05},
            distributions={"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.1)},
            value=0.5,
        )
    )
    kept = refit_best(study, base, tiny_data, 1.0, tracker=NullTracker(), parent_run_id=None)
    assert kept.val_acc is not None and kept.test_acc is not None
    result = refit_best(
        study, base, tiny_data, 1.0, tracker=NullTracker(), parent_run_id=None, holdout=False
    )
    assert result.val_acc is None and 0.0 <= result.test_acc <= 1.0
    assert study.user_attrs["refit"]["val_acc"] is None


def test_a_trial_that_scores_the_test_set_is_planned_with_its_test_pass():
    """budget.search_test: a trial that also scores the 10,000 test images costs their TTA
    passes in the plan (the baseline study's trials once took ~2.6 min against a planned
    ~1.5), so fewer trials are expected in the same search time; false plans without it."""
    from cifar_hpo.sweep.plan import EVAL_SPEEDUP

    plan = {**PLAN, "pruner": "none", "fidelity": "complete"}
    without = plan_sweep(3600.0, **plan, search_test=False)
    tested = plan_sweep(3600.0, **plan, search_test=True)
    mean_speed = (3000.0 + 800.0) / 2
    test_pass = 10_000 * PLAN["tta_passes"] / (mean_speed * EVAL_SPEEDUP)
    assert tested.trial_s == pytest.approx(without.trial_s + test_pass)
    assert tested.full_trial_s == pytest.approx(without.full_trial_s + test_pass)
    assert tested.expected_trials < without.expected_trials


def test_a_slow_machine_raises_the_refit_share_to_the_recipes_epochs():
    """budget.refit_min_epochs: where the refit share would give the refit fewer epochs than
    the reference recipe's own (a slow CPU: airbench94 at ~270 images/s), the plan takes the
    time from the search, up to MAX_REFIT_SHARE of the budget. Before, a 60-minute baseline
    study on such a machine planned a 6.5-epoch refit against the recipe's 9.9."""
    from cifar_hpo.sweep.plan import MAX_REFIT_SHARE

    slow = {**PLAN, "images_per_sec": {"airbench94": 270.0}, "refit_epochs": 20}
    plain = plan_sweep(3600.0, **slow, refit_share=0.35, refit_holdout=False)
    assert plain.refit_epochs < 10
    raised = plan_sweep(3600.0, **slow, refit_share=0.35, refit_holdout=False, refit_min_epochs=10)
    assert raised.refit_epochs >= 10 and raised.search_s < plain.search_s
    assert raised.search_s + raised.refit_s <= 3600.0
    assert any("refit share raised from 35% to 53%" in n for n in raised.notes), raised.notes
    # a fast machine keeps its share; an impossible minimum stops at MAX_REFIT_SHARE
    fast = plan_sweep(
        3600.0,
        **{**slow, "images_per_sec": {"airbench94": 900.0}},
        refit_share=0.35,
        refit_holdout=False,
        refit_min_epochs=10,
    )
    assert fast.refit_s == pytest.approx(plain.refit_s) and fast.refit_epochs >= 10
    capped = plan_sweep(600.0, **slow, refit_share=0.35, refit_holdout=False, refit_min_epochs=10)
    assert capped.refit_s == pytest.approx((600.0 - 12.0) * MAX_REFIT_SHARE)
    assert capped.refit_epochs < 10
    assert any("a budget of ~" in n and "would hold them" in n for n in capped.notes)
    # a share already at the cap is not "raised"; the note says what budget would do
    at_cap = plan_sweep(
        600.0, **slow, refit_share=MAX_REFIT_SHARE, refit_holdout=False, refit_min_epochs=10
    )
    assert at_cap.refit_s == pytest.approx(capped.refit_s)
    assert not any("raised" in n for n in at_cap.notes), at_cap.notes
    hold = next(n for n in at_cap.notes if "would hold them" in n)
    minutes = int(re.search(r"a budget of ~(\d+) min", hold).group(1))
    bigger = plan_sweep(
        minutes * 60.0, **slow, refit_share=MAX_REFIT_SHARE, refit_holdout=False,
        refit_min_epochs=10,
    )  # fmt: skip
    assert bigger.refit_epochs >= 10, bigger.notes


def test_refit_min_epochs_above_the_refit_epochs_is_refused():
    with pytest.raises(SweepSpecError, match="refit_min_epochs 30 is above the refit's epochs 20"):
        from cifar_hpo.sweep.spec import parse_spec

        parse_spec({**SPEC, "budget": {"epochs": 2, "refit_epochs": 20, "refit_min_epochs": 30}})


def test_the_refit_uses_the_time_left_up_to_the_specs_epochs_not_the_plans():
    """The plan's refit epochs come from the probe before trial 1; when the search's epochs
    ran faster, the refit takes the time it was kept, up to the spec's refit_epochs. Before,
    the plan's figure capped it (a 60-minute baseline on a 271 images/s probe: 10.1 epochs
    while ~12 fit)."""
    from cifar_hpo.sweep.plan import end_reserve
    from cifar_hpo.sweep.race_plan import plan_finalists

    def refit_epochs_left(left_s, epoch_s, reference=False):
        # what race_after_search gives plan_finalists: the time left, less the end reserve
        time_s = left_s * 0.97 - end_reserve(3600.0)
        one = dict(finalists=1, seeds=1, reference=reference, epochs=20)
        return plan_finalists(time_s, epoch_s, 20.0, **one).epochs

    epoch_s = 50_000 / 330  # the best trial's own speed, 330 images/s
    epochs = refit_epochs_left(31 * 60.0, epoch_s)
    assert 11.5 < epochs < 12.5
    assert refit_epochs_left(31 * 60.0, epoch_s / 3) == 20.0
    assert refit_epochs_left(31 * 60.0, epoch_s, reference=True) < 6.2
    assert refit_epochs_left(5.0, epoch_s) == 0.0


def test_a_budget_already_used_up_is_refused_saying_what_one_trial_needs(project):
    """`sweep --budget 1s` on a study that has used more than that: exit 2 and one line with
    what one trial needs here, instead of exit 0, no trial and "give --budget to extend"."""
    from helpers import fails_with

    Path("sweeps", "spent.yaml").write_text(yaml.safe_dump(SPEC))
    Path("studies").mkdir(exist_ok=True)
    storage = optuna.storages.RDBStorage("sqlite:///studies/optuna.db")
    study = optuna.create_study(study_name="spent", storage=storage, direction="maximize")
    study.set_user_attr(BUDGET_ATTR, {"total_s": 60.0, "used_s": 60.0})
    MlflowClient("sqlite:///mlflow.db").search_experiments()  # its tables exist: no INFO lines
    result = runner.invoke(app, ["sweep", "--study", "spent", "--budget", "1s", "--no-progress"])
    line = fails_with(result, "--budget 1 s: ", "s of it are used already", "one needs ~")
    assert re.search(r"give --budget \d+ s or more", line), line
    assert "to extend" not in result.output
    assert optuna.load_study(study_name="spent", storage=storage).trials == []
