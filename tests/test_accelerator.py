"""The training core on an accelerator (CUDA or MPS): skipped where there is none (CI).

Run on a GPU machine with ``pytest tests/test_accelerator.py``. Checks what a CPU run cannot:
fp16 autocast with a GradScaler (and unscaled gradient clipping), the uint8 -> device input
path, checkpoint/resume of a GPU run, and that a GPU-trained model exports and scores on CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.device import InputTransform, amp_enabled, autocast, resolve_device
from cifar_hpo.engine import train
from cifar_hpo.export import export_classifier, load_classifier
from cifar_hpo.models import create_model, list_models

ACCELERATOR = resolve_device("auto")
pytestmark = pytest.mark.skipif(ACCELERATOR.type == "cpu", reason="no CUDA or MPS device")


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_a_step_under_autocast(name):
    model = create_model(name, 10).to(ACCELERATOR, memory_format=torch.channels_last).train()
    x = torch.randn(8, 3, 32, 32, device=ACCELERATOR).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,), device=ACCELERATOR)
    with autocast(ACCELERATOR, amp_enabled(ACCELERATOR, "auto")):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    assert logits.shape == (8, 10) and logits.device.type == ACCELERATOR.type
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_input_transform_matches_the_cpu_one(tiny_data):
    images = torch.from_numpy(tiny_data.train_images[:16])
    on_cpu = InputTransform(tiny_data.mean, tiny_data.std, torch.device("cpu"))(images)
    on_acc = InputTransform(tiny_data.mean, tiny_data.std, ACCELERATOR)(images)
    assert on_acc.device.type == ACCELERATOR.type
    torch.testing.assert_close(on_acc.cpu(), on_cpu, atol=1e-5, rtol=1e-5)


def test_amp_training_with_clipping_learns_and_resumes(tiny_data, tmp_path):
    overrides = {
        "device": ACCELERATOR.type,
        "amp": "auto",
        "optim.grad_clip": 1.0,
        "epochs": 4,
        "augment.policy": "flip-crop",
        "data.val_fraction": 0.2,
    }
    full = train(tiny_config(**overrides), tiny_data)
    assert full.status == "completed", full.message
    assert [r["epoch"] for r in full.history] == [1, 2, 3, 4]
    assert all(math.isfinite(r["train_loss"]) for r in full.history)
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    assert full.test.metrics["acc"] > 0.3  # 10 learnable colour classes: chance is 0.1

    ckpt = tmp_path / "ckpt.pt"
    half = train(tiny_config(**overrides), tiny_data, [_StopAfter(2), Checkpointing(ckpt)])
    assert len(half.history) == 2
    resumed = train(tiny_config(**overrides), tiny_data, resume=load_checkpoint(ckpt))
    assert resumed.status == "completed"
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == half.history  # restored, not retrained


def test_gpu_trained_model_exports_and_scores_on_cpu(tiny_data, tmp_path):
    result = train(tiny_config(device=ACCELERATOR.type, amp="auto", epochs=3), tiny_data)
    path = export_classifier(
        result.model,
        tmp_path / "model.pt",
        class_names=tiny_data.class_names,
        mean=tiny_data.mean,
        std=tiny_data.std,
    )
    model, meta = load_classifier(path)
    x = torch.from_numpy(tiny_data.test_images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        acc = (model(x).argmax(1).numpy() == tiny_data.test_labels).mean()
    assert meta["class_names"] == list(tiny_data.class_names)
    assert acc == pytest.approx(result.test.metrics["acc"], abs=0.05)


class _StopAfter(Callback):
    """Asks the run to stop after ``epochs`` epochs, as an interrupted run would."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, state, record):
        if record["epoch"] >= self.epochs:
            state.request_stop()
