"""The config tree: dotted/nested keys, round trips, one-line errors, overrides, YAML files."""

from __future__ import annotations

import pytest

from cifar_hpo.config import (
    ConfigError,
    TrainConfig,
    load_config,
    parse_overrides,
    with_overrides,
)
from cifar_hpo.models import list_models, model_info


def _error(values) -> str:
    """The ConfigError message for ``values``; also checks that it is one line."""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


def test_defaults_are_valid_and_documented_values():
    cfg = TrainConfig()
    assert TrainConfig.from_dict({}) == cfg
    assert (cfg.model.name, cfg.optim.name, cfg.schedule.name) == ("airbench", "sgd", "onecycle")
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.data.val_fraction) == (10, 512, 0.1, 0.1)
    assert cfg.augment.policy == "strength" and cfg.augment.strength == 0.25


def test_dotted_and_nested_keys_give_the_same_config():
    dotted = TrainConfig.from_dict(
        {"optim.lr": 0.05, "model.name": "seed000_cnn", "model.width": 0.5, "epochs": 3}
    )
    nested = TrainConfig.from_dict(
        {"optim": {"lr": 0.05}, "model": {"name": "seed000_cnn", "width": 0.5}, "epochs": 3}
    )
    mixed = TrainConfig.from_dict(
        {"optim": {"lr": 0.05}, "model.name": "seed000_cnn", "model": {"width": 0.5}, "epochs": 3}
    )
    assert dotted == nested == mixed
    assert dotted.optim.lr == 0.05 and dotted.optim.momentum == 0.9  # siblings keep defaults
    assert dotted.model.hparams == {"width": 0.5}


def test_to_flat_round_trip():
    cfg = TrainConfig.from_dict(
        {
            "model.name": "seed000_cnn",
            "model.dropout": 0.25,
            "schedule.name": "cosine",
            "augment.policy": "seed002",
            "data.data_dir": "/x",
            "tta": True,
        }
    )
    flat = cfg.to_flat()
    assert flat["optim.lr"] == 0.1 and flat["model.dropout"] == 0.25
    assert flat["data.data_dir"] == "/x" and flat["tta"] == 1  # true = level 1 (mirror)
    assert all(not isinstance(v, dict) for v in flat.values())
    assert TrainConfig.from_dict(flat) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig().to_flat() == TrainConfig.from_dict(TrainConfig().to_flat()).to_flat()


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"foo": 1}, "'foo'"),
        ({"optim.lrr": 1}, "'optim.lrr'"),
        ({"optim": {"lrr": 1}}, "'optim.lrr'"),
        ({"augment.strenght": 0.5}, "'augment.strenght'"),
    ],
)
def test_unknown_keys_are_named(values, key):
    message = _error(values)
    assert "unknown key" in message and key in message


def test_wrong_type_names_key_and_value():
    message = _error({"optim.lr": "abc"})
    assert message.startswith("optim.lr:") and "'abc'" in message
    message = _error({"batch_size": 1.5})
    assert "batch_size" in message and "1.5" in message
    message = _error({"epochs": "ten"})
    assert "epochs" in message and "'ten'" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 0),
        ("optim.lr", -1),
        ("augment.strength", 1.5),
        ("data.val_fraction", 1.0),
        ("epochs", 0),
        ("optim.momentum", 1.0),
    ],
)
def test_out_of_range_values_are_refused(key, value):
    message = _error({key: value})
    assert message.startswith(f"{key}:") and f"(got {value!r})" in message


def test_several_errors_stay_on_one_line():
    message = _error({"batch_size": 0, "optim.lr": -1, "bogus": 1})
    assert "batch_size" in message and "optim.lr" in message and "'bogus'" in message


def test_unknown_model_lists_choices():
    message = _error({"model.name": "nope"})
    assert "unknown model 'nope'" in message
    assert all(name in message for name in list_models())


def test_unknown_model_hparam_names_allowed():
    message = _error({"model.name": "seed000_cnn", "model.foo": 1})
    assert "'foo'" in message
    assert "allowed: " + ", ".join(sorted(model_info("seed000_cnn").hparams)) in message


def test_model_hparams_are_typed_like_their_defaults():
    # YAML reads 1e-3 as a string; config must not hand the builder a string
    cfg = TrainConfig.from_dict(
        {"model.name": "seed000_cnn", "model.dropout": "1e-3", "model.width": 1}
    )
    assert cfg.model.hparams == {"dropout": 0.001, "width": 1.0}
    assert isinstance(cfg.model.hparams["dropout"], float)
    message = _error({"model.name": "seed000_cnn", "model.dropout": "x"})
    assert "model.dropout" in message and "'x'" in message
    message = _error({"model.name": "compact200k", "model.dilation": 1.5})
    assert "model.dilation" in message and "1.5" in message
    message = _error({"model.name": "seed000_cnn", "model.width": True})
    assert "model.width" in message


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("optim.name", "rmsprop", "'sgd', 'adam', 'adamw' or 'muon'"),
        ("schedule.name", "exp", "'onecycle', 'linear', 'cosine', 'plateau', 'step' or 'constant'"),
        ("amp", "maybe", "'auto', 'on' or 'off'"),
        ("data.dataset", "mnist", "'cifar10' or 'cifar100'"),
    ],
)
def test_unknown_choice_lists_allowed(key, value, allowed):
    message = _error({key: value})
    assert message.startswith(f"{key}:") and allowed in message and repr(value) in message


def test_unknown_augment_policy_lists_policies():
    message = _error({"augment.policy": "zzz"})
    assert "unknown augment policy 'zzz'" in message and "seed002" in message


def test_key_inside_a_value_is_an_error():
    with pytest.raises(ConfigError, match="inside 'optim'"):
        TrainConfig.from_dict({"optim": 1, "optim.lr": 0.1})


def test_parse_overrides_reads_yaml_scalars():
    out = parse_overrides(
        [
            "optim.lr=0.05",
            "tta=true",
            "epochs=3",
            "device=cpu",
            "data.data_dir=",
            " seed = 7",
            "model.name=seed000_cnn",
        ]
    )
    assert out == {
        "optim.lr": 0.05,
        "tta": True,
        "epochs": 3,
        "device": "cpu",
        "data.data_dir": None,
        "seed": 7,
        "model.name": "seed000_cnn",
    }
    assert isinstance(out["epochs"], int) and isinstance(out["optim.lr"], float)
    assert parse_overrides(["a=x=y"]) == {"a": "x=y"}  # only the first '=' splits


@pytest.mark.parametrize("item", ["optim.lr", "=3", ""])
def test_parse_overrides_needs_key_and_equals(item):
    with pytest.raises(ConfigError, match="must look like key=value") as info:
        parse_overrides([item])
    assert "\n" not in str(info.value)


def test_amp_on_off_survive_yaml_booleans(tmp_path):
    # YAML 1.1 reads on/off as booleans, in override values and in files alike
    assert parse_overrides(["amp=off"]) == {"amp": False}
    assert TrainConfig.from_dict(parse_overrides(["amp=off"])).amp == "off"
    assert TrainConfig.from_dict(parse_overrides(["amp=on"])).amp == "on"
    path = tmp_path / "c.yaml"
    path.write_text("amp: off\n")
    assert load_config(path).amp == "off"
    assert "(got 3)" in _error({"amp": 3})


def test_overrides_with_exponent_values_validate():
    # "1e-3" is a string in YAML 1.1; typed fields still end up as floats
    cfg = TrainConfig.from_dict(parse_overrides(["optim.lr=1e-3", "optim.wd=5e-4"]))
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.wd == pytest.approx(5e-4)


def test_with_overrides_revalidates_and_keeps_the_rest():
    base = TrainConfig.from_dict({"model.name": "seed000_cnn", "model.width": 0.5, "epochs": 3})
    new = with_overrides(base, {"optim.lr": 0.02, "model.dropout": 0.1})
    assert new.optim.lr == 0.02 and new.epochs == 3
    assert new.model.hparams == {"width": 0.5, "dropout": 0.1}
    assert base.optim.lr == 0.1  # frozen: the original is untouched
    with pytest.raises(ConfigError, match="batch_size"):
        with_overrides(base, {"batch_size": 0})


def test_with_overrides_changing_model_drops_old_hparams():
    base = TrainConfig.from_dict({"model.name": "seed000_cnn", "model.dropout": 0.2})
    new = with_overrides(base, {"model.name": "resnet20"})
    assert new.model.name == "resnet20" and new.model.hparams == {}
    new = with_overrides(base, {"model": {"name": "cifarnet", "width": 0.5}})
    assert new.model.hparams == {"width": 0.5}
    same = with_overrides(base, {"model.name": "seed000_cnn"})
    assert same.model.hparams == {"dropout": 0.2}


def test_with_overrides_model_as_plain_value_is_a_config_error():
    with pytest.raises(ConfigError, match="model"):
        with_overrides(TrainConfig(), {"model": "my_name"})


def test_load_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "epochs: 3\noptim:\n  lr: 0.01\n  name: adam\nmodel:\n  name: seed000_cnn\n"
        "  width: 0.5\naugment.strength: 0.5\n"
    )
    cfg = load_config(path, {"optim.lr": 0.02})
    assert (cfg.epochs, cfg.optim.lr, cfg.optim.name) == (3, 0.02, "adam")
    assert cfg.model.hparams == {"width": 0.5} and cfg.augment.strength == 0.5
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"config file '.*empty.yaml' is empty: expected a"):
        load_config(empty)
    assert load_config(None, {"epochs": 2}).epochs == 2


def _load_error(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: [1, 2\nseed: 1\n")
    message = _load_error(path)
    assert message.startswith("malformed YAML") and "bad.yaml" in message and "line 4" in message


def test_non_mapping_yaml_and_missing_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert "must hold a mapping of keys, got list" in _load_error(path)
    message = _load_error(tmp_path / "missing.yaml")
    assert "cannot read config file" in message and "No such file" in message


def test_yaml_with_bad_value_fails_at_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    assert _load_error(path) == (
        "unknown key 'optim.lrr'; allowed: name, lr, momentum, nesterov, wd, decoupled, "
        "bias_scaler, muon_lr, muon_momentum, muon_ns_steps, lookahead_steps, lookahead_decay, "
        "label_smoothing, grad_clip"
    )
