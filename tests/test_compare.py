"""`cifar-hpo compare`: deltas equal to the runs' per-class files, artifacts in the challenger's
run, refs by run id, trial number and alias, one-line errors, and the latency protocol."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from helpers import fails_with, tiny_config
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.compare import find_disagreements, model_from_weights
from cifar_hpo.data import cache_path, save_cache
from cifar_hpo.latency import measure_latency_ms
from cifar_hpo.sweep.compare import compare_runs
from cifar_hpo.sweep.storage import RUN_ID_ATTR
from cifar_hpo.tracking import RunOutcome, Tracker, registered_model_name, tracked_train

STUDY = "cmp"
FAST = ["--latency-repeats", "2", "--top", "4", "--device", "cpu"]


@dataclasses.dataclass
class Store:
    """Two tracked runs with models (trials 0 and 1 of study ``cmp``, trial 0 the champion),
    one run without a model and one scored on validation only."""

    root: Path
    uri: str
    storage: str
    champion: str  # run ids
    challenger: str
    bare: str  # the challenger's result logged again without a model
    val_only: str  # the same without a test report (its per_class.json is validation's)


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    save_cache(tiny_data, cache_path(root / "data", "cifar10"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow's artifacts (./mlruns) stay in the temporary folder
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        tracker = Tracker(uri, system_metrics=False)
        runs, results = {}, {}
        for side, overrides in (
            ("champion", {"seed": 0}),
            ("challenger", {"seed": 1, "model.name": "seed001_cnn", "optim.lr": 0.1}),
        ):
            config = tiny_config(epochs=1, **{"data.val_fraction": 0.1, **overrides})
            results[side], runs[side] = tracked_train(
                tracker, config, tiny_data, [], run_folder=root / side
            )
        for name, result in (
            ("bare", results["challenger"]),
            ("val_only", dataclasses.replace(results["challenger"], test=None)),
        ):
            run = tracker.start_run("train", name, {"cifar_hpo.role": "train"}, result.config)
            run.log_result(result)
            run.end(RunOutcome.COMPLETE)
            runs[name] = run.run_id
        storage = f"sqlite:///{root / 'optuna.db'}"
        study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
        for value, side in ((0.9, "champion"), (0.8, "challenger")):
            trial = optuna.trial.create_trial(value=value, user_attrs={RUN_ID_ATTR: runs[side]})
            study.add_trial(trial)
        model_id = tracker.run_record(runs["champion"]).model_id
        tracker.register_champion(registered_model_name(STUDY), model_id, {"study": STUDY})
        yield Store(root, uri, storage, **runs)


@pytest.fixture
def use_store(store, monkeypatch):
    monkeypatch.chdir(store.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("CIFAR_HPO_DATA_DIR", str(store.root / "data"))
    return store


def read_json(client: MlflowClient, run_id: str, path: str, tmp_path: Path):
    return json.loads(Path(client.download_artifacts(run_id, path, tmp_path)).read_text())


def artifact_names(client: MlflowClient, run_id: str, folder: str) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, folder)}


def test_compare_reports_deltas_that_match_the_runs_per_class_files(use_store, tmp_path):
    s = use_store
    cmp = compare_runs(s.champion, s.challenger, top_n=4, device="cpu", latency_repeats=2)
    client = MlflowClient(s.uri)
    champ = read_json(client, s.champion, "per_class.json", tmp_path / "a")
    chall = read_json(client, s.challenger, "per_class.json", tmp_path / "b")
    assert cmp.split == "test" and cmp.class_names == [r["name"] for r in champ]
    for row, a, b in zip(cmp.per_class, champ, chall, strict=True):
        assert row["name"] == a["name"] == b["name"]
        for m in ("precision", "recall", "f1"):
            assert row["delta"][m] == pytest.approx(b[m] - a[m], abs=1e-12)
            assert (row["champion"][m], row["challenger"][m]) == (a[m], b[m])
    assert cmp.macro["delta"]["f1"] == pytest.approx(
        np.mean([b["f1"] for b in chall]) - np.mean([a["f1"] for a in champ])
    )
    # confusion matrices from the reloaded models: of the test split, matching the runs' scores
    support = np.array([r["support"] for r in champ])
    for side, report in (("champion", champ), ("challenger", chall)):
        confusion = cmp.confusion[side]
        assert (confusion.sum(axis=1) == support).all()
        logged_hits = sum(r["recall"] * r["support"] for r in report)
        assert abs(np.trace(confusion) - logged_hits) <= 1  # fp32 both times; a near tie at most
    diff = cmp.confusion["diff"]
    assert (diff == cmp.confusion["challenger"] - cmp.confusion["champion"]).all()
    assert diff.sum() == 0
    d = cmp.disagreements
    assert d.images == int(support.sum()) and d.total > 0
    assert d.challenger_right + d.champion_right + d.both_wrong == d.total
    assert len(d.top) == min(4, d.total)
    gaps = [abs(r["gap"]) for r in d.top]
    assert gaps == sorted(gaps, reverse=True)
    assert all(r["champion_pred"] != r["challenger_pred"] for r in d.top)
    # the exact McNemar test counts exactly the disagreements one side gets right
    assert (cmp.mcnemar.only_a, cmp.mcnemar.only_b) == (d.challenger_right, d.champion_right)
    from scipy.stats import binomtest

    n = d.challenger_right + d.champion_right
    assert cmp.mcnemar.p_value == pytest.approx(
        binomtest(d.challenger_right, n, 0.5).pvalue if n else 1.0
    )
    # side by side: the two architectures' sizes, a latency each
    assert cmp.cost["champion"]["params"] == 620_362 and cmp.cost["challenger"]["params"] == 545_098
    assert all(cmp.cost[s]["macs"] > 0 and cmp.cost[s]["latency_ms"] > 0 for s in cmp.cost)
    # logged to the challenger's run under compare/<champion run id>/
    folder = f"compare/{s.champion}"
    assert cmp.artifact_dir == folder
    names = artifact_names(client, s.challenger, folder)
    assert names == {"compare.json", "confusion_diff.png", "disagreements.png"}
    logged = read_json(client, s.challenger, f"{folder}/compare.json", tmp_path)
    assert logged["split"] == "test" and logged["challenger"]["run_id"] == s.challenger
    assert [r["delta"] for r in logged["per_class"]] == [r["delta"] for r in cmp.per_class]
    assert logged["confusion"]["diff"] == diff.tolist()
    assert logged["mcnemar"]["p_value"] == pytest.approx(cmp.mcnemar.p_value)


def test_cli_by_alias_and_trial_number(use_store):
    s = use_store
    args = ["compare", "champion", "1", "--study", STUDY, "--storage", s.storage, *FAST]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "champion (cifar-hpo-cmp v1" in out and f"trial 1 of {STUDY}" in out
    assert "per class, test split" in out and "airplane" in out and "macro avg" in out
    assert "params" in out and "620,362" in out and "545,098" in out
    assert "disagree on" in out and "exact McNemar p = " in out
    assert f"logged to run {s.challenger}: compare/champion/" in out.replace("\n", "")
    client = MlflowClient(s.uri)
    assert "compare.json" in artifact_names(client, s.challenger, "compare/champion")
    # a registered NAME@ALIAS needs no --study; --no-log logs nothing
    args = ["compare", f"{registered_model_name(STUDY)}@champion", s.challenger, "--no-log"]
    result = CliRunner().invoke(app, [*args, *FAST])
    assert result.exit_code == 0, result.output
    assert "logged to run" not in result.output


@pytest.mark.parametrize(
    ("refs", "fragments"),
    [
        (["nosuch", "1"], ["'nosuch'", "trial number", "alias", "champion"]),
        (["7", "1"], [f"study '{STUDY}' has no trial 7"]),
        (["0", "f" * 32], ["no MLflow run", "f" * 32]),
        (["cifar-hpo-cmp@gold", "1"], ["no alias 'gold'", "champion"]),
    ],
)
def test_bad_refs_are_one_line(use_store, refs, fragments):
    args = ["compare", *refs, "--study", STUDY, "--storage", use_store.storage, *FAST]
    fails_with(CliRunner().invoke(app, args), *fragments)


def test_trial_number_without_study_is_one_line(use_store):
    fails_with(CliRunner().invoke(app, ["compare", "0", "1"]), "'0'", "--study")


def test_without_a_model_the_deltas_remain(use_store):
    s = use_store
    cmp = compare_runs(s.challenger, s.bare, latency_repeats=0, log=False)
    assert all(row["delta"] == {"precision": 0, "recall": 0, "f1": 0} for row in cmp.per_class)
    assert cmp.disagreements is None and not cmp.confusion
    assert cmp.cost["challenger"]["params"] == 545_098  # as the run logged it
    assert cmp.cost["challenger"]["latency_ms"] is None
    assert any("no logged model" in note for note in cmp.notes)


def test_runs_scored_on_different_splits_are_refused(use_store):
    s = use_store
    with pytest.raises(ValueError, match="test split, the challenger's of the val split"):
        compare_runs(s.champion, s.val_only, log=False)


def test_disagreements_are_ordered_by_the_true_class_gap():
    champion = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    challenger = np.array([[0.1, 0.9], [0.4, 0.6], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 1])
    d = find_disagreements(champion, challenger, labels, top_n=2)
    assert (d.images, d.total, d.challenger_right, d.champion_right, d.both_wrong) == (
        4,
        3,
        2,
        1,
        0,
    )
    assert [r["index"] for r in d.top] == [0, 3]  # |gap| 0.8, then 0.25 (image 1: 0.2)
    assert d.top[0]["gap"] == pytest.approx(-0.8) and d.top[1]["challenger_pred"] == 1


def test_latency_is_a_positive_finite_median_and_leaves_the_model_alone():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(1, 3, 32, 32))  # materialize the lazy layer
    model.train()
    threads = torch.get_num_threads()
    ms = measure_latency_ms(model, warmup=1, repeats=3)
    assert math.isfinite(ms) and ms > 0
    assert model.training and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency_ms(model, repeats=0)


def test_validation_predictions_use_the_runs_held_out_images(use_store):
    """Runs scored on validation only are compared on the champion's validation split."""
    from cifar_hpo.sweep.compare import Comparison, _predict, resolve_ref

    s = use_store
    tracker = Tracker(s.uri)
    run_ids = {"champion": s.champion, "challenger": s.challenger}
    refs = {side: resolve_ref(run_id, tracker) for side, run_id in run_ids.items()}
    weights = {side: tracker.load_weights(r.run_id, r.model_id) for side, r in refs.items()}
    models = {side: model_from_weights(w) for side, w in weights.items()}
    names = list(weights["champion"]["class_names"])
    out = Comparison(*refs.values(), "val", names, per_class=[], macro={}, accuracy={}, cost={})
    images = _predict(out, weights, models, None, "cpu", top_n=3)
    assert images.shape == (min(3, out.disagreements.total), 32, 32, 3)
    assert out.disagreements.images == 30  # data.val_fraction 0.1 of 300 training images
    for side, run_id in run_ids.items():
        confusion = out.confusion[side]
        assert (confusion.sum(axis=1) == 3).all()  # stratified: 3 per class
        logged = tracker.run_record(run_id).metrics["final_val_acc"]
        assert abs(np.trace(confusion) - logged * 30) <= 1
