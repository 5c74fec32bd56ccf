"""Sweep YAML validation: every bad file fails before trial 1 with a one-line error."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from cifar_hpo.sweep.spec import (
    SweepSpecError,
    build_pruner,
    build_sampler,
    load_spec,
    parse_spec,
    suggest,
)

GOOD = {
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "base": {"augment.policy": "flip-crop"},
    "budget": {"epochs": 2, "train_fraction": 0.5},
    "space": {
        "model.name": {"type": "categorical", "choices": ["seed000_cnn", "resnet20"]},
        "model.width": {
            "type": "float",
            "low": 0.5,
            "high": 1.0,
            "when": {"model.name": ["resnet20"]},
        },
        "optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "batch_size": {"type": "categorical", "choices": [32, 64]},
    },
}


def _with(path: str, value):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    node = spec
    *parents, leaf = path.split("/")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


_DELETE = object()


def test_good_spec_and_shipped_studies_validate():
    spec = parse_spec(GOOD)
    assert spec.base_config().epochs == 2
    assert spec.base_config().data.train_fraction == 0.5
    shipped = sorted(p.stem for p in Path("sweeps").glob("*.yaml") if p.stem != "recipes")
    assert {"quick", "baseline", "gpu", "seed004_under_200k"} <= set(shipped)
    assert {"seed000", "seed001", "seed002", "seed003"} <= set(shipped)
    for name in shipped:
        assert load_spec(name).space
    seed004 = load_spec("seed004_under_200k")
    assert seed004.metric_names == ["val_acc", "params"]
    assert seed004.constraints["params"].max == 200_000
    assert "champion-under-200k" in seed004.rules


@pytest.mark.parametrize(
    ("study", "recipe"),
    [
        ("seed000", "seed000-cnn"),
        ("seed001", "seed001-cnn"),
        ("seed002", "seed002-cifarnet"),
        ("seed003", "seed003-resnet18"),
        ("baseline", "airbench94"),
    ],
)
def test_per_seed_studies_start_from_the_seeds_recipe(study, recipe):
    """Trial 0 of each per-seed study (its base plus the first enqueued config) is the seed's
    recipe of sweeps/recipes.yaml: same model, optimizer, schedule, augmentation and values
    (a weight decay of 0 enters as the log range's floor); only the hold-out differs."""
    from cifar_hpo.config import with_overrides
    from cifar_hpo.reproduce.recipes import recipe_config
    from cifar_hpo.tracking import resolved_params  # model hyperparameters' defaults included

    spec = load_spec(study)
    trial0 = resolved_params(with_overrides(spec.base_config(), spec.enqueue[0]))
    published = resolved_params(recipe_config(recipe, Path("sweeps") / "recipes.yaml"))
    keys = {*spec.base, *spec.enqueue[0]} - {"data.val_fraction", "seed"}
    for key in sorted(keys):
        want = published[key]
        if key == "optim.wd" and want == 0:
            want = spec.space["optim.wd"].low
        assert trial0[key] == want, (key, trial0[key], want)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("bogus", 1, "unknown key 'bogus'"),
        ("space/optim.lr/lowx", 1, "unknown key 'space.optim.lr.lowx'"),
        ("space/optim.lr/low", "abc", "space.optim.lr.low"),
        ("space/optim.lr/low", 0.5, "empty or inverted range"),
        ("space/optim.lr/high", 0.001, "empty or inverted range"),
        ("space/optim.lr/low", 0.0, "log range needs low > 0"),
        ("space/batch_size/choices", [], "non-empty 'choices'"),
        ("space/model.name/choices", ["seed000_cnn", "nope"], "unknown model 'nope'"),
        (
            "space/schedule.name",
            {"type": "categorical", "choices": ["onecycle", "warp"]},
            "schedule.name",
        ),
        ("space/optim.name", {"type": "categorical", "choices": ["sgd", "lion"]}, "optim.name"),
        ("space/batch_size/choices", [0, 32], "batch_size"),
        ("space/optim.lrr", {"type": "float", "low": 0.1, "high": 0.2}, "unknown key 'optim.lrr'"),
        ("space/model.width/when", {"model.name": ["resnet18"]}, "no hyperparameter 'width'"),
        ("space/model.width/when", {"model.nam": ["x"]}, "unknown parameter 'model.nam'"),
        ("space/optim.lr/type", "complex", "space.optim.lr.type"),
        ("base/optim.lr", -1, "base: optim.lr"),
        ("budget/epochs", 0, "budget.epochs"),
        ("sampler", {"name": "annealing"}, "sampler.name"),
        ("pruner", {"name": "sometimes"}, "pruner.name"),
        ("objective", {"metric": "test_acc"}, "objective.0: unknown metric 'test_acc'"),
        ("objective", {"metric": "val_loss", "direction": "maximize"}, "must be minimized"),
        ("enqueue", [{"optim.lr": -1}], "enqueue[0]"),
        ("enqueue", [{"optim.wd": 0.1}], "not a searched parameter"),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_key(path, value, expected):
    with pytest.raises(SweepSpecError) as err:
        parse_spec(_with(path, value), "sweeps/x.yaml")
    message = str(err.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith("sweeps/x.yaml")


def test_grid_sampler_refuses_continuous_params():
    bad = _with("sampler", {"name": "grid"})
    with pytest.raises(SweepSpecError, match="grid needs categorical"):
        parse_spec(bad)


def test_malformed_yaml_and_unknown_study(tmp_path):
    (tmp_path / "broken.yaml").write_text("space: {optim.lr: [1, 2\n")
    with pytest.raises(SweepSpecError, match="malformed YAML.*line"):
        load_spec("broken", tmp_path)
    with pytest.raises(SweepSpecError, match="unknown study 'nope'.*available: broken"):
        load_spec("nope", tmp_path)


def test_suggest_respects_conditions_and_types():
    spec = parse_spec(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_models = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, spec)
        seen_models.add(params["model.name"])
        assert ("model.width" in params) == (params["model.name"] == "resnet20")
        assert 0.001 <= params["optim.lr"] <= 0.1
        assert params["batch_size"] in (32, 64)
        study.tell(trial, 0.5)
    assert seen_models == {"seed000_cnn", "resnet20"}


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc"])
def test_every_sampler_builds(name):
    spec = parse_spec(_with("sampler", {"name": name, "seed": 1}))
    assert isinstance(build_sampler(spec), optuna.samplers.BaseSampler)


def test_grid_sampler_builds_from_choices():
    grid = {
        "sampler": {"name": "grid"},
        "space": {
            "batch_size": {"type": "categorical", "choices": [32, 64]},
            "optim.lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
        },
    }
    spec = parse_spec(grid)
    sampler = build_sampler(spec)
    assert isinstance(sampler, optuna.samplers.GridSampler)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_every_pruner_builds(name, cls):
    assert isinstance(build_pruner(parse_spec(_with("pruner", {"name": name}))), cls)
