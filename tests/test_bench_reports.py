"""README blocks written by the benchmark scripts: content, verdicts and provenance stamps."""

from __future__ import annotations

import datetime

import optuna
import pytest
import torch
from helpers import load_bench
from optuna.trial import FrozenTrial, TrialState

README = "# x\n\nbefore\n\n<!-- RESULTS:{name} -->\nstale\n<!-- /RESULTS:{name} -->\n\nafter\n"


def _seed(seed: int, acc: float) -> dict:
    return {
        "seed": seed,
        "status": "completed",
        "test_acc": acc,
        "test_top5": 0.999,
        "minutes": 44.0,
        "train_minutes": 42.0,
        "images_per_sec": 190.0,
        "images_seen": 487_424,
        "epochs_run": 10,
    }


def _report(bench, accs: list[float], command: str, stamp: str) -> dict:
    """A recipe-check report of airbench94 with these test accuracies, one per seed."""
    seeds = [_seed(i, a) for i, a in enumerate(accs)]
    return {
        "recipe": "airbench94",
        "epochs": 9.9,
        "tta": 2,
        "train_images": 50_000,
        "seeds_asked": [0, 1],
        "seeds": seeds,
        "summary": bench.summarize(seeds),
        "command": command,
        "stamp": stamp,
    }


@pytest.mark.parametrize(
    ("accs", "verdict"),
    [
        ([0.9390], "not decided (needs 2 seeds)"),
        ([0.9390, 0.9372], "met"),  # mean 93.81 %, min 93.72 %
        ([0.9420, 0.9345], "not met"),  # mean 93.83 % but one seed below 93.5 %
        ([0.9370, 0.9375], "not met"),  # mean below 93.8 %
    ],
)
def test_recipe_check_block_states_the_verdict(accs, verdict):
    bench = load_bench("recipe_check")
    report = _report(bench, accs, "python bench/recipe_check.py", "Command: `x`; stamp")
    text = bench.render(report)
    assert f": {verdict})" in text
    assert f"| 0 | {100 * accs[0]:.2f} % | 99.90 % | 44.0 | 190 |" in text
    assert f"{len(accs)} of 2 seeds done" in text and text.endswith("Command: `x`; stamp")


@pytest.mark.parametrize(
    ("accs", "verdict"),
    [([0.9056, 0.9081], "met"), ([0.9010, 0.9030], "not met"), ([0.9100], "not decided")],
)
def test_recipe_check_states_the_lossy_copy_bar(tmp_path, accs, verdict):
    """With upstream's accuracy on the same copy, the block states the bar (that minus 0.2
    points) and whether the mean meets it; --render-only rewrites the README from the JSON."""
    import json

    bench = load_bench("recipe_check")
    command = "python bench/recipe_check.py --seeds 0 1"
    report = _report(bench, accs, command, f"Command: `{command}`; stamp")
    results = tmp_path / "check.json"
    results.write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(README.format(name="recipe-check"))
    args = ["--render-only", "--json", str(results), "--readme", str(readme)]
    bench.main([*args, "--upstream-acc", "0.9043", "--upstream-note", "upstream here"])
    text = readme.read_text()
    assert "upstream here reached 90.43 %, so the bar is **90.23 %** (mean): " + verdict in text
    assert "Command: `python bench/recipe_check.py --seeds 0 1`; stamp" in text  # its own run


def test_throughput_block_has_ratios_and_stamp(tmp_path):
    bench = load_bench("throughput")
    summary = {
        "compute": 200.0,
        "ours": 194.0,
        "source_style": 90.0,
        "ours_vs_compute": 0.97,
        "source_vs_compute": 0.45,
        "ours_vs_source": 2.16,
        "cpu_ms_per_image": {"compute": 10.0, "ours": 10.3, "source_style": 25.0},
    }
    results = {
        "model": "airbench94",
        "batch_size": 1024,
        "policy": "alternating-flip-translate",
        "threads": 2,
        "rounds": [{}, {}],
        "summary": summary,
    }
    text = bench.render_block(
        results, "python bench/throughput.py --recipe airbench94", torch.device("cpu"), False
    )
    assert (
        "| ours (uint8 cache + batch augmentation + `engine.train`) | 194 | 0.97x | 10.30 |" in text
    )
    assert "Ours / pure compute **0.97x** (target >= 0.95x: met)" in text
    assert (
        "ours / source-project-style **2.16x** (the source-project-style target is set for "
        "`seed000_cnn`" in text
    )
    assert "Command: `python bench/throughput.py --recipe airbench94`" in text
    assert "CPU features: " in text and "device cpu, precision fp32" in text


def test_sweep_report_reads_the_study_and_rewrites_its_block(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    t0 = datetime.datetime(2026, 12, 1, 10, 0, 0)
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    states = [
        (TrialState.COMPLETE, 0.81),
        (TrialState.PRUNED, None),
        (TrialState.COMPLETE, 0.86),
        (TrialState.FAIL, None),
    ]
    for k, (state, value) in enumerate(states):
        study.add_trial(
            FrozenTrial(
                number=k,
                trial_id=k,
                state=state,
                value=value,
                datetime_start=t0 + datetime.timedelta(minutes=10 * k),
                datetime_complete=t0 + datetime.timedelta(minutes=10 * k + 7),
                params={"optim.lr": 0.01 * (k + 1)},
                distributions=dist,
                user_attrs={"test_acc": 0.855} if value == 0.86 else {},
                system_attrs={},
                intermediate_values={},
            )
        )
    study.set_user_attr("champion", {"trial": 2, "version": "3"})
    readme = tmp_path / "README.md"
    readme.write_text(README.format(name="sweep"))
    bench = load_bench("sweep_report")
    report = bench.main(["--study", "s", "--storage", storage, "--readme", str(readme)])
    assert report["counts"]["COMPLETE"] == 2 and report["best"]["number"] == 2
    text = readme.read_text()
    assert "stale" not in text and "before" in text and "after" in text
    assert "**37 min** wall time, **2 complete, 1 pruned, 1 failed** trials" in text
    assert "Champion: trial 2, validation **86.00 %**, test **85.50 %**" in text
    assert "version 3" in text and "`optim.lr` 0.03" in text
    assert "Command: `python bench/sweep_report.py --study s --storage" in text
    # trials that skipped the test pass (budget.search_test false) show validation only
    untested = optuna.create_study(study_name="u", storage=storage, direction="maximize")
    untested.enqueue_trial({"optim.lr": 0.1})
    untested.optimize(lambda t: t.suggest_float("optim.lr", 1e-3, 1.0, log=True), n_trials=1)
    readme.write_text(README.format(name="sweep"))
    bench.main(["--study", "u", "--storage", storage, "--readme", str(readme)])
    text = " ".join(readme.read_text().split())
    assert "Champion: trial 0, validation **10.00 %** at the study's per-trial budget" in text
    # a race that promoted the recipe: the best search trial is not called the champion, and
    # the wall time is the budget's (search and race), not the trials' span
    race = {"epochs": 8.5, "arms": [], "promoted_trial": 7, "promoted_reference": True,
            "summary": "no configuration beat the recipe significantly"}  # fmt: skip
    untested.set_user_attr("race", race)
    untested.set_user_attr("budget", {"used_s": 3402.0, "total_s": 3600.0})
    readme.write_text(README.format(name="sweep"))
    bench.main(["--study", "u", "--storage", storage, "--readme", str(readme)])
    text = " ".join(readme.read_text().split())
    assert "Study `u`: **57 min** wall time (search trials 0 min)" in text, text
    assert "Best search trial: trial 0, validation **10.00 %**" in text
    assert "not the registry's `champion`: the race below promoted trial 7 (the recipe)" in text
    assert "Champion: trial 0" not in text
    # a loss objective is shown as the number it is, not as a percentage
    lossy = optuna.create_study(study_name="l", storage=storage, direction="minimize")
    lossy.set_metric_names(["val_loss"])
    lossy.enqueue_trial({"optim.lr": 0.5})
    lossy.optimize(lambda t: t.suggest_float("optim.lr", 1e-3, 1.0, log=True) * 2, n_trials=1)
    readme.write_text(README.format(name="sweep"))
    bench.main(["--study", "l", "--storage", storage, "--readme", str(readme)])
    text = " ".join(readme.read_text().split())
    assert "Champion: trial 0, `val_loss` **1.0000** at the study's per-trial budget" in text


def test_sweep_report_of_a_multi_objective_study_shows_front_refit_and_aliases(tmp_path):
    from cifar_hpo.sweep.spec import LimitSpec

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(
        study_name="mo", storage=storage, directions=["maximize", "minimize"]
    )
    study.set_metric_names(["val_acc", "params"])
    t0 = datetime.datetime(2026, 12, 1, 10, 0, 0)
    dist = {"model.width": optuna.distributions.FloatDistribution(0.2, 0.5)}
    # (val_acc, params, constraint): 2 is dominated by 0; 3 is infeasible (too big)
    rows = [(0.84, 150_000, -0.25), (0.80, 90_000, -0.55), (0.79, 160_000, -0.2), (0.9, 3e5, 0.5)]
    for k, (acc, params, violation) in enumerate(rows):
        study.add_trial(
            FrozenTrial(
                number=k,
                trial_id=k,
                state=TrialState.COMPLETE,
                value=None,
                values=[acc, params],
                datetime_start=t0 + datetime.timedelta(minutes=10 * k),
                datetime_complete=t0 + datetime.timedelta(minutes=10 * k + 9),
                params={"model.width": 0.2 + 0.05 * k},
                distributions=dist,
                user_attrs={"test_acc": acc - 0.01, "measures": {"macs": 1e7 * (k + 1)}},
                system_attrs={"constraints:params": violation},
                intermediate_values={},
            )
        )
    study.set_user_attr(
        "refit",
        {"trial": 0, "epochs": 12.0, "seconds": 600.0, "val_acc": 0.86, "test_acc": 0.855},
    )
    study.set_user_attr(
        "reference_refit",
        {"trial": 1, "epochs": 12.0, "search_value": 0.8, "val_acc": 0.83, "test_acc": 0.8271},
    )
    study.set_user_attr(
        "race",
        {
            "epochs": 12.0,
            "arms": [
                {"trial": 0, "reference": False, "test_acc": [0.855, 0.851]},
                {"trial": 1, "reference": True, "test_acc": [0.8271, 0.83]},
            ],
            "summary": "trial 0 beats the recipe significantly: +2.45 points",
        },
    )
    bench = load_bench("sweep_report")
    rules = {"small": {"params": LimitSpec(max=100_000)}}
    report = bench.study_report(optuna.load_study(study_name="mo", storage=storage), rules)
    assert report["infeasible"] == 1 and report["best"]["number"] == 0
    assert [r["trial"] for r in report["front"]] == [0, 1]
    assert report["rules"] == {"small": 1}
    text = bench.render(report, "cmd", "stamp", ["docs/mo/pareto_front.png"])
    assert "**4 complete (1 of them infeasible), 0 pruned, 0 failed** trials" in text
    assert "150,000 parameters" in text
    assert "(12 epochs, 10.0 min), the registered champion: validation 86.00 %, test **85.5" in text
    assert "Alias `small`: trial 1." in text
    assert (
        "Finalists raced at 12 epochs (test accuracy per seed): trial 0: 85.50 %, 85.10 %; "
        "trial 1 (recipe): 82.71 %, 83.00 %. Result: trial 0 beats the recipe significantly" in text
    )
    assert (
        "The reference recipe (trial 1, 80.00 % at search fidelity) refit with the same 12 "
        "epochs: validation 83.00 %, test **82.71 %**." in text
    )
    assert "| trial | val_acc | params | macs | test_acc |" in text
    assert "| 0 | 84.00 % | 150,000 | 10,000,000 | 83.00 % |" in text
    assert "| 1 | 80.00 % | 90,000 | 20,000,000 | 79.00 % |" in text
    assert "| 2 |" not in text and "| 3 |" not in text
    assert "![pareto_front](docs/mo/pareto_front.png)" in text


def test_per_seed_table_puts_the_seeds_recipe_beside_the_tuned_champion(tmp_path):
    """bench/per_seed.py: a row per per-seed study from its refits (the recipe's at the
    champion's epochs and the champion's), the seed's own reported figure from
    sweeps/recipes.yaml, trial counts and the budget; a study the storage lacks says so."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="seed000", storage=storage, direction="maximize")
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for k, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=0.7 + 0.05 * k if state == TrialState.COMPLETE else None,
                params={"optim.lr": 0.001 * (k + 1)},
                distributions=dist,
            )
        )
    study.set_user_attr("refit", {"trial": 2, "epochs": 25.0, "test_acc": 0.8012})
    study.set_user_attr("reference_refit", {"trial": 0, "epochs": 25.0, "test_acc": 0.7634})
    study.set_user_attr("budget", {"total_s": 1800.0, "used_s": 1745.0})
    study.set_user_attr(
        "race",
        {
            "arms": [
                {"trial": 2, "reference": False, "test_acc": [0.8012, 0.8030, 0.7994]},
                {"trial": 0, "reference": True, "test_acc": [0.7634, 0.7650, 0.7618]},
            ],
            "champion_trial": 2,
            "promoted_reference": False,
            "comparison": {
                "welch": {"low": 3.41, "high": 4.15, "p_value": 4.7e-4},
                "mcnemar": {"p_value": 1.2e-9},
            },
        },
    )
    readme = tmp_path / "README.md"
    readme.write_text(README.format(name="per-seed"))
    bench = load_bench("per_seed")
    rows = bench.main(
        ["--study", "seed000", "--study", "seed002", "--storage", storage, "--readme", str(readme)]
    )
    assert [r["ran"] for r in rows] == [True, False]
    text = readme.read_text()
    assert "stale" not in text and "before" in text and "after" in text
    assert (
        "| `seed000` | `seed000_cnn` | 25 | 81.33 % test | 76.34 % | **80.12 %** (trial 2) | "
        "+3.78 points on 3 vs 3 seeds (+3.41 to +4.15, Welch p = 0.00047; McNemar p = 1.2e-09) "
        "| tuned | 2 / 1 / 0 | 29.1 / 30 |" in text
    )
    assert (
        "| `seed002` | `cifarnet` | 250 | 87.88 % test | not run in this storage (spec: 120 min)"
        in text
    )
    assert "Command: `python bench/per_seed.py --study seed000" in text
