"""Search fidelity: rank agreement (Spearman's rho, top-1 regret) and bench/fidelity.py."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import yaml
from helpers import TINY_SWEEP_BASE, load_bench

from cifar_hpo.sweep.fidelity import panel, rank_agreement
from cifar_hpo.sweep.spec import parse_spec


def test_rank_agreement_on_a_hand_built_panel():
    full = [0.65, 0.68, 0.685, 0.63]  # issue 20's four seed000 recipes at 12 epochs
    epoch3 = [0.489, 0.441, 0.456, 0.427]  # the same at epoch 3 of that schedule
    a = rank_agreement(epoch3, full)
    # ranks of epoch3: 4 2 3 1, of full: 2 3 4 1 -> d^2 = 4 + 1 + 1 + 0 = 6
    assert a.rho == pytest.approx(1 - 6 * 6 / (4 * (16 - 1)))  # 0.4, as the issue says
    assert (a.kept, a.best) == (0, 2)
    assert a.regret == pytest.approx(3.5)  # 68.5 - 65.0 points
    same = rank_agreement(full, full)
    assert same.rho == pytest.approx(1.0) and same.regret == 0.0
    worst = rank_agreement([0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert worst.rho == pytest.approx(-1.0) and worst.regret == pytest.approx(20.0)
    nan_last = rank_agreement([math.nan, 0.2, 0.1], [0.9, 0.5, 0.4])
    assert nan_last.kept == 1 and nan_last.regret == pytest.approx(40.0)
    with pytest.raises(ValueError, match="equally long"):
        rank_agreement([0.1], [0.1, 0.2])


SPEC = {
    "base": dict(TINY_SWEEP_BASE),
    "budget": {"epochs": 1, "fidelity": "complete"},
    "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    "enqueue": [{"optim.lr": 0.01}],
}


def test_the_panel_is_the_recipe_then_extras_then_fixed_draws():
    spec = parse_spec(SPEC)
    one = panel(spec, 5, extra=[{"optim.lr": 0.05}], seed=3)
    assert one[:2] == [{"optim.lr": 0.01}, {"optim.lr": 0.05}] and len(one) == 5
    assert panel(spec, 5, extra=[{"optim.lr": 0.05}], seed=3) == one  # the same every run
    assert all(0.001 <= c["optim.lr"] <= 0.1 for c in one)


@pytest.mark.slow
def test_bench_fidelity_scores_each_decision_point_and_writes_its_block(tmp_path, data_dir):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "tinyf.yaml").write_text(yaml.safe_dump(SPEC))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    bench = load_bench("fidelity")
    report = bench.main(
        ["--study", "tinyf", "--sweeps-dir", str(sweeps), "--data-dir", str(data_dir),
         "--size", "3", "--full-epochs", "2", "--train-fraction", "1.0",
         "--complete-epochs", "1", "--subsets", "2@0.5", "--readme", str(readme),
         "--block", "fidelity-tinyf-whole-split",
         "--json", str(tmp_path / "results" / "fidelity-tinyf.json")]
    )  # fmt: skip
    rows, table = report["rows"], report["table"]
    assert len(rows) == 3 and rows[0]["params"] == {"optim.lr": 0.01}
    full = [r["full"] for r in rows]
    scores = {
        "mid-schedule": [r["mid"][1] for r in rows],
        "complete": [r["complete"][1] for r in rows],
        "data-subset": [r["data-subset"]["2@0.5"] for r in rows],
    }
    for t in table:
        expected = rank_agreement(scores[t["mechanism"]], full)
        assert t["rho"] == pytest.approx(expected.rho, nan_ok=True)
        assert t["regret"] == pytest.approx(expected.regret)
    assert [(t["mechanism"], t["epochs"], t["share"]) for t in table] == [
        ("mid-schedule", 1, 0.5),
        ("complete", 1, 0.5),
        ("data-subset", 2, 0.5),  # 2 epochs on half the images: half the full run's images
    ]
    for r in rows:  # 2 epochs on half the images: about half the full run's (whole batches)
        assert 0.25 < r["subset_images"]["2@0.5"] / (2 * r["images_per_epoch"]) < 0.75
    text = readme.read_text()
    # the block named by --block, not the study's default fidelity-tinyf
    assert "<!-- RESULTS:fidelity-tinyf-whole-split -->" in text
    assert "RESULTS:fidelity-tinyf -->" not in text and "| mid-schedule | epoch 1 | 50 % |" in text
    assert "| data-subset | complete schedule of 2 on 50 % of the images | 50 % |" in text
    assert "data-subset at its first decision: rho" in text
    assert "Command: `python bench/fidelity.py --study tinyf" in text
    saved = json.loads((tmp_path / "results" / "fidelity-tinyf.json").read_text())
    assert [r["full"] for r in saved["rows"]] == full


def test_a_subset_is_epochs_at_a_share_of_the_images():
    bench = load_bench("fidelity")
    assert bench.parse_subset("12@0.25") == (12, 0.25)
    assert bench.subset_label(bench.parse_subset("1.5@1")) == "1.5@1"
    for bad in ("12", "12@0", "0@0.5", "x@y", "3@1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected EPOCHS@SHARE"):
            bench.parse_subset(bad)
