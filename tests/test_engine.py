"""The training core: determinism, exact resume, schedulers, early stopping, divergence."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_config

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.engine import train

TIMING_KEYS = {"epoch_seconds", "images_per_sec"}


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_train_learns_and_reports_everything(tiny_data):
    result = train(tiny_config(epochs=4), tiny_data)
    assert result.status == "completed"
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["val_acc"] > 0.3  # 10 classes: chance is 0.1
    keys = {
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_top5",
        "val_f1_macro",
        "epoch_seconds",
        "images_per_sec",
        "images_seen",
    }
    assert keys <= set(result.history[-1])
    test = result.test.metrics
    assert set(test) >= {"acc", "top3", "top5", "f1_macro", "precision_macro", "loss"}
    assert test["acc"] <= test["top3"] <= test["top5"] <= 1.0
    assert len(result.test.per_class) == 10
    assert sum(r["support"] for r in result.test.per_class) == len(tiny_data.test_labels)
    assert result.test.confusion.sum() == len(tiny_data.test_labels)
    # 270 train images after the 10% split; batch 32 with drop_last -> 8 steps of 32
    assert result.images_seen == 4 * 8 * 32


def test_same_seed_same_history_different_seed_differs(tiny_data):
    a = train(tiny_config(seed=3), tiny_data)
    b = train(tiny_config(seed=3), tiny_data)
    c = train(tiny_config(seed=4), tiny_data)
    assert _strip(a.history) == _strip(b.history)
    assert _strip(a.history) != _strip(c.history)


class _Interrupt(Callback):
    def __init__(self, after_epoch):
        self.after = after_epoch

    def on_epoch_end(self, state, record):
        if record["epoch"] == self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("policy", ["flip-crop", "seed002"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_data, tmp_path, policy):
    cfg = tiny_config(epochs=4, **{"augment.policy": policy, "optim.label_smoothing": 0.1})
    full = train(cfg, tiny_data)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, [Checkpointing(ckpt), _Interrupt(2)])
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2
    resumed = train(cfg, tiny_data, [Checkpointing(ckpt)], resume=state)
    assert _strip(resumed.history) == _strip(full.history)
    assert resumed.test.metrics == full.test.metrics
    assert load_checkpoint(ckpt)["epoch"] == 4


def test_resume_with_another_config_is_refused(tiny_data, tmp_path):
    ckpt = tmp_path / "c.pt"
    train(tiny_config(epochs=1), tiny_data, [Checkpointing(ckpt)])
    with pytest.raises(ValueError, match="different config.*optim.lr"):
        train(tiny_config(epochs=1, **{"optim.lr": 0.01}), tiny_data, resume=load_checkpoint(ckpt))


def _lrs(data, **kw):
    return [r["lr"] for r in train(tiny_config(**kw), data, evaluate_test=False).history]


def test_onecycle_warms_up_then_anneals(tiny_data):
    lrs = _lrs(tiny_data, epochs=6, **{"schedule.name": "onecycle", "schedule.pct_start": 0.3})
    peak = lrs.index(max(lrs))
    assert 0 < peak < 5
    assert lrs[-1] < lrs[0] < max(lrs)
    assert max(lrs) <= 0.05 + 1e-9


def test_cosine_with_warmup(tiny_data):
    lrs = _lrs(
        tiny_data,
        epochs=5,
        **{"schedule.name": "cosine", "schedule.warmup_epochs": 1, "schedule.min_lr": 0.001},
    )
    assert lrs[0] == pytest.approx(0.05, rel=1e-3)  # warmup of exactly one epoch ends at lr
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.001, rel=1e-3)


def test_step_decays_every_step_size_epochs(tiny_data):
    lrs = _lrs(
        tiny_data,
        epochs=4,
        **{"schedule.name": "step", "schedule.step_size": 2, "schedule.gamma": 0.5},
    )
    assert lrs == pytest.approx([0.05, 0.05, 0.025, 0.025])  # LR used during each epoch


def test_constant_keeps_lr(tiny_data):
    assert _lrs(tiny_data, epochs=2, **{"schedule.name": "constant"}) == pytest.approx([0.05] * 2)


def test_plateau_reduces_when_val_loss_stalls(tiny_data):
    # lr so small the validation loss cannot improve by the 1e-4 threshold -> decays
    lrs = _lrs(
        tiny_data,
        epochs=3,
        **{
            "schedule.name": "plateau",
            "optim.lr": 1e-4,
            "schedule.plateau_patience": 0,
            "optim.momentum": 0.0,
            "optim.nesterov": False,
            "augment.policy": "none",
            "model.dropout": 0.0,
        },
    )
    assert lrs[:2] == pytest.approx([1e-4, 1e-4]) and lrs[2] == pytest.approx(1e-5)


def test_early_stopping_stops_and_restores_best(tiny_data):
    cfg = tiny_config(
        epochs=10,
        **{
            "optim.lr": 1e-12,
            "early_stopping.patience": 2,
            "early_stopping.metric": "val_acc",
            "augment.policy": "none",
            "model.dropout": 0.0,
            "optim.momentum": 0.0,
            "optim.nesterov": False,
            "schedule.name": "constant",
        },
    )
    result = train(cfg, tiny_data)
    assert result.status == "early_stopped"
    assert len(result.history) == 3
    assert "did not improve for 2 epochs" in result.message
    assert result.test is not None


def test_non_finite_loss_ends_run_as_diverged(tiny_data):
    cfg = tiny_config(
        epochs=5,
        **{
            "optim.lr": 1e30,
            "schedule.name": "constant",
            "optim.momentum": 0.0,
            "optim.nesterov": False,
        },
    )
    result = train(cfg, tiny_data)
    assert result.status == "diverged"
    assert "non-finite" in result.message
    assert len(result.history) < 5
    assert math.isnan(result.history[-1]["train_loss"])
    assert result.test is None


def _poison_forward_calls(monkeypatch, calls: set[int]):
    """Make the model's training forward passes number ``calls`` (1-based) return NaN logits."""
    import cifar_hpo.engine as engine

    real_create = engine.create_model

    def create(*args, **kwargs):
        model = real_create(*args, **kwargs)
        count = {"n": 0}

        def hook(module, inputs, output):
            if module.training:
                count["n"] += 1
                if count["n"] in calls:
                    return output * float("nan")
            return output

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(engine, "create_model", create)


def test_amp_skips_a_non_finite_step_and_trains_on(tiny_data, monkeypatch):
    # bf16 autocast on CPU: a GradScaler (scale 1) skips the step; fp32 would stop at once
    _poison_forward_calls(monkeypatch, {3})
    result = train(tiny_config(epochs=2, amp="on"), tiny_data)
    assert result.status == "completed", result.message
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())

    _poison_forward_calls(monkeypatch, {3})
    fp32 = train(tiny_config(epochs=2), tiny_data)
    assert fp32.status == "diverged" and "epoch 1, step 3" in fp32.message


def test_amp_run_with_non_finite_losses_in_a_row_is_diverged(tiny_data, monkeypatch):
    from cifar_hpo.engine import MAX_SKIPPED_STEPS_IN_A_ROW

    steps = set(range(2, 3 + MAX_SKIPPED_STEPS_IN_A_ROW))  # one more than the scaler tolerates
    _poison_forward_calls(monkeypatch, steps)
    result = train(tiny_config(epochs=2, amp="on"), tiny_data)
    assert result.status == "diverged"
    assert f"epoch 1, step {max(steps)}" in result.message


def test_callback_can_request_stop(tiny_data):
    class StopAfterOne(Callback):
        def on_epoch_end(self, state, record):
            state.request_stop("stopped", "enough")

    result = train(tiny_config(epochs=5), tiny_data, [StopAfterOne()])
    assert (result.status, result.message, len(result.history)) == ("stopped", "enough", 1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_and_clipping_train(tiny_data, optimizer):
    cfg = tiny_config(
        epochs=1,
        **{
            "optim.name": optimizer,
            "optim.lr": 0.01 if optimizer == "sgd" else 1e-3,
            "optim.grad_clip": 1.0,
        },
    )
    result = train(cfg, tiny_data, evaluate_test=False)
    assert result.status == "completed" and math.isfinite(result.history[0]["train_loss"])


def test_train_fraction_and_no_validation(tiny_data):
    cfg = tiny_config(epochs=1, **{"data.train_fraction": 0.5, "data.val_fraction": 0.0})
    result = train(cfg, tiny_data)
    assert result.val is None and "val_acc" not in result.history[0]
    assert result.images_seen == (150 // 32) * 32


def test_bf16_autocast_path_runs(tiny_data):
    result = train(tiny_config(epochs=1, amp="on", tta=True), tiny_data)
    assert result.status == "completed" and 0 <= result.test.metrics["acc"] <= 1


def test_channels_last_off_matches_shapes(tiny_data):
    result = train(tiny_config(epochs=1, channels_last=False), tiny_data, evaluate_test=False)
    assert result.status == "completed"


def test_core_never_imports_optuna_mlflow_typer():
    import subprocess
    import sys

    code = (
        "import sys, cifar_hpo.engine, cifar_hpo.lr_find, cifar_hpo.runs, cifar_hpo.plots;"
        "bad=[m for m in ('optuna','mlflow','typer') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_tensor_input_contract():
    from cifar_hpo.device import InputTransform

    images = torch.full((2, 32, 32, 3), 255, dtype=torch.uint8)
    x = InputTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device("cpu"))(images)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 2.0))
    assert x.is_contiguous(memory_format=torch.channels_last)  # no copy for the NHWC permute

    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    expected = images.permute(0, 3, 1, 2).double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)
    expected = expected / torch.tensor(std).view(1, 3, 1, 1)
    for channels_last in (True, False):
        x = InputTransform(mean, std, torch.device("cpu"), channels_last)(images)
        torch.testing.assert_close(x.double(), expected, atol=1e-5, rtol=1e-5)
        assert x.is_contiguous() != channels_last
