"""Tests for cifar_hpo.models: every registered model, the registry API and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_hpo.models import (
    ModelInfo,
    UnknownModelError,
    count_macs,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)
from cifar_hpo.models import registry as registry_module

REPO_ROOT = Path(__file__).resolve().parents[1]

# Exact trainable-parameter counts at num_classes=10 and default hparams, taken from the real
# models. A change here is a change of architecture: update deliberately, never to make CI pass.
EXPECTED_PARAMS = {
    "airbench": 1_166_496,
    "airbench_small": 292_944,
    "airbench94": 1_971_352,  # plus 1,440 frozen (whitening and BatchNorm weights)
    "cifarnet": 174_762,  # seed002 README: "174,762 parameters"
    "compact200k": 144_736,
    "resnet18": 11_181_642,
    "resnet20": 272_474,
    "seed000_cnn": 620_362,
    "seed001_cnn": 545_098,
}

ALL_MODELS = list_models()


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    # One intra-op thread: these batches are tiny, and on a busy 2-core machine OpenMP's
    # spinning threads made a forward pass ~30x slower. Restored so other test modules keep
    # their setting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32)


def test_expected_table_covers_exactly_the_registered_models() -> None:
    assert sorted(EXPECTED_PARAMS) == ALL_MODELS


# --- every registered model ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_gives_finite_logits(name: str, num_classes: int) -> None:
    model = create_model(name, num_classes=num_classes)
    out = model(_batch())
    assert out.shape == (2, num_classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = create_model(name)
    loss = nn.functional.cross_entropy(model(_batch()), torch.tensor([0, 1]))
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for pname, p in trainable:
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # frozen by design (airbench94's whitening, BN weights)
            assert p.grad is None, f"{name}.{pname} is frozen but got a gradient"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_matches_contiguous(name: str) -> None:
    model = create_model(name).eval()
    x = _batch()
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_is_pinned(name: str) -> None:
    assert count_parameters(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_info_describes_the_builder(name: str) -> None:
    info = model_info(name)
    assert isinstance(info, ModelInfo)
    assert info.name == name and info.source and info.description
    assert "num_classes" not in info.hparams
    # The reported defaults are accepted back, and the info is a copy, not registry state.
    assert count_parameters(create_model(name, **info.hparams)) == EXPECTED_PARAMS[name]
    info.hparams["bogus"] = 1
    assert "bogus" not in model_info(name).hparams


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if "width" in model_info(n).hparams])
def test_width_changes_the_model(name: str) -> None:
    small = create_model(name, width=model_info(name).hparams["width"] / 2)
    assert count_parameters(small) < EXPECTED_PARAMS[name]
    assert small(_batch()).shape == (2, 10)


# --- counts the seeds state -------------------------------------------------------------------


def test_resnet18_matches_seed003_torchinfo() -> None:
    assert count_parameters(create_model("resnet18", num_classes=100)) == 11_227_812
    assert count_parameters(create_model("resnet18", num_classes=10)) == 11_181_642


def test_resnet18_keeps_the_imagenet_stem() -> None:
    model = create_model("resnet18", num_classes=100)
    assert model.conv1(_batch(1)).shape == (1, 64, 16, 16)  # seed003 table: [1, 64, 16, 16]


def test_cifarnet_matches_seed002_count() -> None:
    assert count_parameters(create_model("cifarnet")) == 174_762


def test_compact200k_is_under_200k() -> None:
    assert count_parameters(create_model("compact200k")) < 200_000
    assert count_parameters(create_model("compact200k", dilation=1)) < 200_000


# --- count_macs -------------------------------------------------------------------------------


def test_count_macs_resnet18_matches_seed003_torchinfo() -> None:
    macs = count_macs(create_model("resnet18", num_classes=100))
    assert isinstance(macs, int)
    assert abs(macs - 37.07e6) / 37.07e6 < 0.05


def test_count_macs_is_per_image_and_restores_modes() -> None:
    model = create_model("seed001_cnn")
    model.train()
    model.classifier.eval()  # a mixed state must come back as it was
    macs = count_macs(model)
    assert macs > 0 and isinstance(macs, int)
    assert model.training and not model.classifier.training and model.features.training
    assert count_macs(model, input_size=(4, 3, 32, 32)) == macs
    # Two 3x3 convs and two linear layers, by hand.
    expected = 3 * 32 * 9 * 32 * 32 + 32 * 64 * 9 * 16 * 16 + 4096 * 128 + 128 * 10
    assert macs == expected


def test_count_macs_leaves_no_grad() -> None:
    model = create_model("resnet20")
    count_macs(model)
    assert all(p.grad is None for p in model.parameters())


# --- errors -----------------------------------------------------------------------------------


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(UnknownModelError) as exc:
        create_model("foo")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("unknown model 'foo'; choose one of: ")
    assert msg.endswith(", ".join(ALL_MODELS))
    assert isinstance(exc.value, ValueError)
    with pytest.raises(UnknownModelError):
        model_info("foo")


def test_unknown_hparam_names_key_and_allowed() -> None:
    with pytest.raises(ValueError, match=r"unknown hparam 'depth' .*allowed: dropout, width$"):
        create_model("cifarnet", depth=3)
    with pytest.raises(ValueError, match=r"'resnet18'; allowed: \(none\)"):
        create_model("resnet18", width=2.0)


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("cifarnet", {"dropout": 1.0}, "dropout must be a number in [0, 1)"),
        ("seed000_cnn", {"dropout": -0.1}, "dropout must be a number in [0, 1)"),
        ("compact200k", {"dropout": "0.1"}, "dropout must be a number in [0, 1)"),
        ("resnet20", {"width": 0}, "width must be a finite number > 0"),
        ("airbench", {"width": -1.0}, "width must be a finite number > 0"),
        ("airbench", {"scale": 0.0}, "scale must be a finite number > 0"),
        ("compact200k", {"dilation": 0}, "dilation must be an integer >= 1"),
        ("resnet18", {"num_classes": 1}, "num_classes must be >= 2"),
        ("cifarnet", {"num_classes": 10.0}, "num_classes must be an integer"),
    ],
)
def test_bad_values_raise_one_line(name: str, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        create_model(name, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"model {name!r}: ")
    assert needle in msg


def test_register_model_rejects_duplicates_and_bad_builders(monkeypatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_model("tmp_tiny", source="test", description="a linear model")
    def tmp_tiny(num_classes: int = 10, hidden: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    assert "tmp_tiny" in list_models() and list_models() == sorted(list_models())
    assert model_info("tmp_tiny").hparams == {"hidden": 8}
    assert create_model("tmp_tiny", num_classes=3)(_batch()).shape == (2, 3)

    with pytest.raises(ValueError, match="already registered"):
        register_model("cifarnet", source="x", description="x")(tmp_tiny)
    with pytest.raises(ValueError, match="num_classes"):
        register_model("tmp_bad", source="x", description="x")(lambda classes=10: nn.Identity())
    with pytest.raises(ValueError, match="needs a default"):
        register_model("tmp_bad2", source="x", description="x")(
            lambda num_classes=10, *, depth: nn.Identity()
        )


# --- import hygiene ---------------------------------------------------------------------------


def test_models_never_import_optuna_mlflow_or_typer() -> None:
    code = (
        "import json, sys\n"
        "import cifar_hpo.models as m\n"
        "for n in m.list_models(): m.create_model(n)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('optuna', 'mlflow', 'typer'))\n"
        "print(json.dumps(bad))\n"
    )
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
