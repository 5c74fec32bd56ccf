"""airbench94 and the core features its recipe uses: patch whitening, the decoupled SGD form,
bias_scaler, the ``linear`` schedule, fractional epochs, Lookahead, alternating flip with
reflect-padded translation, TTA levels, and exact resume of a run that uses all of them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from torch import nn

from cifar_hpo.augment import AugmentPlan, BatchAugmenter, pad_images, plan_for
from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.config import OptimConfig, ScheduleConfig
from cifar_hpo.engine import train
from cifar_hpo.lookahead import Lookahead
from cifar_hpo.models import count_parameters, create_model
from cifar_hpo.models.airbench94 import Airbench94Net, patch_whitening
from cifar_hpo.optim import LinearWarmupDecay, LRSchedule, build_optimizer, torch_sgd_args
from cifar_hpo.reproduce.recipes import load_recipes
from cifar_hpo.tta import tta_logits

MEAN = (0.49, 0.48, 0.45)


# --- the model ---------------------------------------------------------------------------------


def test_airbench94_shapes_parameters_and_frozen_tensors():
    model = create_model("airbench94").eval()
    assert count_parameters(model) == 1_971_352
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 288 + 2 * (64 + 256 + 256)  # whitening weights + BatchNorm weights
    assert model.whiten.weight.shape == (24, 3, 2, 2)
    shapes = []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = model.whiten(x)
        shapes.append(tuple(x.shape))
        for layer in model.layers:
            x = layer(x)
            shapes.append(tuple(x.shape))
    assert shapes == [
        (2, 24, 31, 31),
        (2, 24, 31, 31),  # GELU
        (2, 64, 15, 15),
        (2, 256, 7, 7),
        (2, 256, 3, 3),
        (2, 256, 1, 1),
    ]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    norm = model.layers[1].norm1
    assert norm.momentum == pytest.approx(0.4) and norm.eps == 1e-12
    assert torch.equal(norm.weight, torch.ones(64)) and norm.bias.requires_grad


def test_convs_start_as_identity_on_their_input_channels():
    model = create_model("airbench94")
    w = model.layers[2].conv2.weight  # 256 -> 256
    dirac = torch.zeros_like(w[:256])
    nn.init.dirac_(dirac)
    assert torch.equal(w[:256], dirac)
    assert torch.equal(model.whiten.bias, torch.zeros(24))


def test_width_scales_the_groups():
    model = create_model("airbench94", width=0.5)
    assert model.layers[1].conv1.out_channels == 32
    assert model.layers[3].conv2.out_channels == 128
    assert model.head.in_features == 128


def test_whitened_patches_have_identity_covariance():
    gen = torch.Generator().manual_seed(0)
    # correlated channels and pixels, so the raw patch covariance is far from identity
    raw = torch.randn(400, 3, 32, 32, generator=gen)
    images = raw + 0.8 * raw.roll(1, dims=1) + 0.5 * raw.roll(1, dims=3) + 0.3
    model = Airbench94Net()
    model.init_from_data(images)
    out = F.conv2d(images, model.whiten.weight[:12])
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = flat.T @ flat / len(flat)  # uncentred, as the whitening is computed
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), atol=1e-2, rtol=0)
    torch.testing.assert_close(model.whiten.weight[12:], -model.whiten.weight[:12])
    # and the raw patches were not white to begin with
    patches = F.unfold(images, 2).transpose(1, 2).reshape(-1, 12).double()
    raw_cov = patches.T @ patches / len(patches)
    assert (raw_cov - torch.eye(12, dtype=torch.float64)).abs().max() > 0.5


def test_patch_whitening_matches_upstream_eigen_layout():
    images = torch.randn(50, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    filters = patch_whitening(images, 2, eps=5e-4)
    # upstream: eigenvectors of the covariance of patches flattened as (c, h, w), largest first
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2)
    flat = patches.reshape(len(patches), -1).double()
    values, vectors = torch.linalg.eigh(flat.T @ flat / len(flat))
    first = vectors[:, -1] / math.sqrt(values[-1] + 5e-4)
    got = filters[0].reshape(-1).double()
    assert torch.allclose(got, first, atol=1e-5) or torch.allclose(got, -first, atol=1e-5)


def test_whitening_bias_trains_only_in_its_epochs():
    model = create_model("airbench94", whiten_bias_epochs=2)
    model.set_epoch(1)
    assert model.whiten.bias.requires_grad
    model.set_epoch(2)
    assert not model.whiten.bias.requires_grad
    with pytest.raises(ValueError, match="whiten_bias_epochs must be >= 0, got -1"):
        create_model("airbench94", whiten_bias_epochs=-1)


# --- decoupled SGD, bias_scaler, schedule ------------------------------------------------------


@pytest.mark.parametrize(
    ("lr", "wd", "momentum", "batch_size"), [(11.5, 0.0153, 0.85, 1024), (3.0, 0.05, 0.9, 256)]
)
def test_decoupled_conversion_equals_airbench_formulas(lr, wd, momentum, batch_size):
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    upstream_lr = lr / kilostep_scale  # airbench94 main(): for a loss summed over the batch
    upstream_wd = wd * batch_size / kilostep_scale / upstream_lr
    torch_lr, torch_wd = torch_sgd_args(lr, wd, momentum, batch_size)
    assert torch_lr == pytest.approx(upstream_lr * batch_size)  # our loss is the batch mean
    assert torch_lr * torch_wd == pytest.approx(upstream_lr * upstream_wd)  # same decay step

    # and both give the same update: upstream's SGD on a summed loss vs ours on the mean
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    theirs = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    theirs.load_state_dict(ours.state_dict())
    cfg = OptimConfig(decoupled=True, lr=lr, wd=wd, momentum=momentum, bias_scaler=64.0)
    opt = build_optimizer(ours, cfg, batch_size)
    norm = [p for n, p in theirs.named_parameters() if n == "1.bias"]
    other = [p for n, p in theirs.named_parameters() if n != "1.bias"]
    lr_bias = upstream_lr * 64
    wd_bias = wd * batch_size / kilostep_scale / lr_bias
    ref = torch.optim.SGD(
        [
            {"params": norm, "lr": lr_bias, "weight_decay": wd_bias},
            {"params": other, "lr": upstream_lr, "weight_decay": upstream_wd},
        ],
        momentum=momentum,
        nesterov=True,
    )
    x, y = torch.randn(batch_size, 6), torch.randint(0, 3, (batch_size,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(ours(x), y, label_smoothing=0.2).backward()
        opt.step()
        ref.zero_grad()
        F.cross_entropy(theirs(x), y, label_smoothing=0.2, reduction="sum").backward()
        ref.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_decoupled_needs_sgd():
    with pytest.raises(ValueError, match="optim.decoupled=true needs optim.name=sgd, got 'adam'"):
        OptimConfig(name="adam", decoupled=True)


def test_bias_scaler_groups_normalization_biases():
    model = create_model("airbench94", width=0.25)
    opt = build_optimizer(
        model,
        OptimConfig(decoupled=True, lr=11.5, wd=0.0153, momentum=0.85, bias_scaler=64.0),
        1024,
    )
    main, biases = opt.param_groups
    assert biases["lr"] == pytest.approx(64 * main["lr"])
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(main["lr"] * main["weight_decay"])
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == norm_biases
    assert any(p is model.whiten.bias for p in main["params"])  # an ordinary bias
    # the frozen whitening weights and BatchNorm weights are not optimized at all
    optimized = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.whiten.weight) not in optimized


def test_linear_schedule_matches_airbench94():
    total = 476  # ceil(48 * 9.9)
    fn = LinearWarmupDecay(total, 0.23, 0.2, 0.07)

    def upstream(step):  # airbench94 get_lr
        warmup_steps = int(total * 0.23)
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup_steps) / (total - warmup_steps)
        return 1.0 * (1 - frac) + 0.07 * frac

    for step in (0, 1, 50, 108, 109, 300, 475, 476):
        assert fn(step) == pytest.approx(upstream(step))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = LRSchedule(opt, ScheduleConfig(name="linear", pct_start=0.23), 9.9, 48)
    assert schedule.lr == pytest.approx(0.4)
    for _ in range(total):
        opt.step()
        schedule.step_batch()
    assert schedule.lr == pytest.approx(2.0 * 0.07)


def test_fractional_epochs_take_ceil_of_the_steps(tiny_data):
    # 270 training images, batch 32: 8 steps per epoch; 2.5 epochs -> 20 steps
    result = train(tiny_config(epochs=2.5), tiny_data, evaluate_test=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.images_seen == 20 * 32
    assert [r["images_seen"] for r in result.history] == [256, 512, 640]


# --- Lookahead ---------------------------------------------------------------------------------


def test_lookahead_update_equals_its_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    look = Lookahead(model, every=5, total_steps=20, decay_per_step=0.95)
    slow = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 21):
        with torch.no_grad():  # a stand-in for an optimizer step and new running stats
            for p in model.parameters():
                p.add_(0.1 * step)
            model[1].running_mean.add_(1.0)
        fast = {k: v.clone() for k, v in model.state_dict().items()}
        look.after_step(model, step)
        if step % 5 == 0:
            decay = 0.95**5 * (step / 20) ** 3
            assert look.decay_at(step) == pytest.approx(decay)
            for k, v in slow.items():
                if v.is_floating_point():
                    slow[k] = decay * v + (1 - decay) * fast[k]
            for k, v in model.state_dict().items():
                expected = slow[k] if v.is_floating_point() else fast[k]
                torch.testing.assert_close(v, expected)
        else:
            for k, v in model.state_dict().items():
                assert torch.equal(v, fast[k])  # untouched between updates
    # the last step also syncs fully: fast == slow
    for k, v in look.slow.items():
        assert torch.equal(model.state_dict()[k], v)
    assert model.state_dict()["1.num_batches_tracked"].dtype == torch.long


# --- augmentation ------------------------------------------------------------------------------


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)


def test_alternating_flip_flips_every_image_on_odd_epochs_and_none_on_even():
    images = _images(40)
    aug = BatchAugmenter(AugmentPlan(flip_p=0.5, flip_mode="alternating"), MEAN, seed=3)
    take = aug.bind(images)
    idx = torch.arange(40)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for epoch in range(4):
        aug.set_epoch(epoch)
        batches.append(take(idx, gen))
    base = aug.alternating_flips(40)
    assert 5 < int(base.sum()) < 35  # about half drawn flipped, once
    expected0 = torch.where(base[:, None, None, None], images.flip(2), images)
    assert torch.equal(batches[0], expected0)
    assert torch.equal(batches[1], expected0.flip(2))  # every image flipped on odd epochs
    assert torch.equal(batches[2], batches[0]) and torch.equal(batches[3], batches[1])


def test_airbench94_policy_translates_with_reflect_padding():
    plan = plan_for("alternating-flip-translate")
    assert (plan.crop_pad, plan.flip_mode, plan.pad_mode) == (2, "alternating", "reflect")
    images = _images(16, seed=1)
    padded = pad_images(images, 2, "reflect")
    ref = F.pad(images.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="reflect")
    assert torch.equal(padded.permute(0, 3, 1, 2).float(), ref)
    aug = BatchAugmenter(plan, MEAN, seed=0)
    take = aug.bind(images)
    aug.set_epoch(0)
    out = take(torch.arange(16), torch.Generator().manual_seed(2))
    flips = aug.alternating_flips(16)
    windows = padded.unfold(1, 32, 1).unfold(2, 32, 1)  # (B, 5, 5, C, 32, 32)
    for i in range(16):
        view = out[i].flip(1) if flips[i] else out[i]
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(windows[i, dy, dx].permute(1, 2, 0), view)
        ]
        assert found, f"image {i} is no window of its reflect-padded original"


# --- TTA ---------------------------------------------------------------------------------------


def test_tta_level_2_equals_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = {
            "x": x,
            "up_left": padded[:, :, 0:8, 0:8],
            "down_right": padded[:, :, 2:10, 2:10],
        }
        total = 0
        weights = {"x": 0.25, "up_left": 0.125, "down_right": 0.125}
        for name, view in views.items():
            total = total + weights[name] * (model(view) + model(view.flip(-1)))
        torch.testing.assert_close(tta_logits(model, x, 2), total)
        torch.testing.assert_close(tta_logits(model, x, 1), 0.5 * (model(x) + model(x.flip(-1))))
        torch.testing.assert_close(tta_logits(model, x, 0), model(x))
    with pytest.raises(ValueError, match="tta level must be 0, 1 or 2, got 3"):
        tta_logits(model, x, 3)


def test_tta_config_accepts_levels_and_old_booleans():
    assert tiny_config(tta=True).tta == 1
    assert tiny_config(tta=False).tta == 0
    assert tiny_config(tta=2).tta == 2
    with pytest.raises(ValueError, match="tta"):
        tiny_config(tta=3)


# --- the recipe and exact resume ---------------------------------------------------------------


def test_recipe_holds_airbench94_hyperparameters():
    book = load_recipes()
    recipe = next(r for r in book.recipes if r.name == "airbench94")
    c = book.base_config(recipe)
    assert c.model.name == "airbench94" and c.epochs == 9.9 and c.batch_size == 1024
    assert c.data.val_fraction == 0 and c.tta == 2
    o = c.optim
    assert (o.decoupled, o.lr, o.wd, o.momentum, o.nesterov) == (True, 11.5, 0.0153, 0.85, True)
    assert (o.bias_scaler, o.label_smoothing, o.lookahead_steps) == (64.0, 0.2, 5)
    s = c.schedule
    assert (s.name, s.pct_start, s.start_factor, s.end_factor) == ("linear", 0.23, 0.2, 0.07)
    assert c.augment.policy == "alternating-flip-translate"


class _Interrupt(Callback):
    def __init__(self, after_epoch: int):
        self.after = after_epoch

    def on_epoch_end(self, state, record):
        if record["epoch"] == self.after:
            raise KeyboardInterrupt


def _strip(history):
    return [
        {k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_sec")}
        for r in history
    ]


def test_airbench94_run_resumes_exactly(tiny_data, tmp_path):
    cfg = tiny_config(
        epochs=3.5,
        batch_size=32,
        tta=2,
        **{
            "model.name": "airbench94",
            "model.width": 0.125,
            "model.whiten_bias_epochs": 2,
            "optim.decoupled": True,
            "optim.lr": 11.5,
            "optim.wd": 0.0153,
            "optim.momentum": 0.85,
            "optim.bias_scaler": 64,
            "optim.label_smoothing": 0.2,
            "optim.lookahead_steps": 3,
            "schedule.name": "linear",
            "schedule.pct_start": 0.23,
            "augment.policy": "alternating-flip-translate",
        },
    )
    full = train(cfg, tiny_data)
    assert full.status == "completed" and len(full.history) == 4
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, [Checkpointing(ckpt), _Interrupt(1)])
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and state["step"] == 8 and state["lookahead"] is not None
    resumed = train(cfg, tiny_data, [Checkpointing(ckpt)], resume=state)
    assert _strip(resumed.history) == _strip(full.history)
    assert resumed.test.metrics == full.test.metrics
    resumed_state = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed_state[name]), name
    assert not resumed.model.whiten.bias.requires_grad  # frozen after epoch 2


def test_exported_model_applies_tta_level_2(tmp_path):
    from cifar_hpo.export import export_classifier, load_classifier

    torch.manual_seed(0)
    model = create_model("airbench94", width=0.125).eval()
    model.init_from_data(torch.randn(64, 3, 32, 32))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    path = export_classifier(
        model, tmp_path / "m.pt", class_names=[str(i) for i in range(10)], mean=mean, std=std, tta=2
    )
    program, meta = load_classifier(path)
    assert meta["tta"] == 2
    x = torch.rand(3, 3, 32, 32)
    normalized = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = tta_logits(model, normalized, 2)
        torch.testing.assert_close(program(x), expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(expected, model(normalized), atol=1e-4)
