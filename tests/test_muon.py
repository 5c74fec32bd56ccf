"""``optim.name: muon`` (airbench94_muon): which tensors Muon trains, its step against
``torch.optim.Muon`` on the filters' matrix view, exact resume, the LR schedule over both
optimizers, a run through the engine, the ``airbench94-muon`` recipe and one-line errors."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from torch import nn

from cifar_hpo.callbacks import Callback, Checkpointing
from cifar_hpo.checkpoint import load_checkpoint
from cifar_hpo.config import ConfigError, OptimConfig, ScheduleConfig
from cifar_hpo.engine import train
from cifar_hpo.models import create_model
from cifar_hpo.muon import ChainedOptimizer, FilterMuon
from cifar_hpo.optim import LRSchedule, build_optimizer, torch_sgd_args
from cifar_hpo.reproduce.recipes import load_recipes

#: airbench94_muon's SGD hyperparameters in the decoupled form (see sweeps/recipes.yaml)
KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))
MUON = OptimConfig(
    name="muon",
    decoupled=True,
    lr=0.67 * KILOSTEP,
    wd=2e-6 * KILOSTEP,
    momentum=0.85,
    bias_scaler=0.053 / 0.67,
    muon_lr=0.24,
    muon_momentum=0.6,
)


def _net() -> nn.Module:
    """Conv (4-D filters) -> BN -> conv -> pool -> linear: every kind of tensor, small."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),
        nn.BatchNorm2d(8),
        nn.GELU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _step(model: nn.Module, opt: torch.optim.Optimizer, x, y, schedule=None) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y, label_smoothing=0.2).backward()
    opt.step()
    if schedule is not None:
        schedule.step_batch()


# --- which tensors go where --------------------------------------------------------------------


def test_conv_filters_go_to_muon_and_the_rest_to_sgd():
    model = create_model("airbench94", width=0.25)
    opt = build_optimizer(model, MUON, batch_size=2000)
    assert isinstance(opt, ChainedOptimizer)
    sgd, muon = opt.optimizers
    assert isinstance(sgd, torch.optim.SGD) and isinstance(muon, FilterMuon)
    filters = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)][1:]  # not whiten
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(p) for p in filters]
    assert len(filters) == 6 and all(p.ndim == 4 and p.requires_grad for p in filters)
    head, biases = sgd.param_groups
    assert [id(p) for p in head["params"]] == [id(model.head.weight)]
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(p) for p in biases["params"]} == {id(model.whiten.bias)} | set(map(id, norm_biases))
    # every trainable tensor exactly once; the frozen whitening and BatchNorm weights not at all
    optimized = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(optimized) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert id(model.whiten.weight) not in optimized
    # upstream's values at batch 2,000 on a summed loss, here for a mean loss (x 2,000)
    assert opt.param_groups[0] is head  # the main group: what LRSchedule.lr reports
    assert head["lr"] == pytest.approx(0.67 * 2000)
    assert biases["lr"] == pytest.approx(0.053 * 2000)
    for group in (head, biases):
        assert group["lr"] * group["weight_decay"] == pytest.approx(2e-6 * 2000)  # per step
        assert group["momentum"] == 0.85 and group["nesterov"]
    m = muon.param_groups[0]
    assert (m["lr"], m["momentum"], m["nesterov"], m["ns_steps"]) == (0.24, 0.6, True, 3)
    assert m["weight_decay"] == 0.0


def test_without_decoupled_muon_keeps_torch_sgd_arguments():
    opt = build_optimizer(_net(), OptimConfig(name="muon", lr=0.05, wd=5e-4, momentum=0.9))
    sgd, muon = opt.optimizers
    decay, no_decay = sgd.param_groups
    assert [p.shape for p in decay["params"]] == [(10, 16)] and decay["weight_decay"] == 5e-4
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    assert [p.shape for p in muon.param_groups[0]["params"]] == [(8, 3, 3, 3), (16, 8, 3, 3)]


# --- the step against torch.optim.Muon ---------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_filter_step_is_torch_muon_on_the_matrix_view(memory_format, normalize):
    gen = torch.Generator().manual_seed(0)
    w = nn.Parameter(
        torch.randn(16, 8, 3, 3, generator=gen).contiguous(memory_format=memory_format)
    )
    ref = nn.Parameter(w.detach().reshape(16, -1).clone())  # upstream's g.reshape(len(g), -1)
    args = dict(lr=0.1, momentum=0.6, nesterov=True, ns_steps=3)
    opt = FilterMuon([w], normalize=normalize, **args)
    ref_opt = torch.optim.Muon([ref], weight_decay=0.0, **args)
    for _ in range(3):  # momentum in play from the second step
        g = torch.randn(16, 8, 3, 3, generator=gen)
        w.grad = g.contiguous(memory_format=memory_format)
        ref.grad = g.reshape(16, -1).clone()
        if normalize:  # airbench94_muon: p.data.mul_(len(p.data) ** 0.5 / p.data.norm())
            with torch.no_grad():
                ref.mul_(math.sqrt(16) / ref.norm())
        before = w.detach().clone()
        opt.step()
        ref_opt.step()
        assert w.is_contiguous(memory_format=memory_format)  # updated in place, layout kept
        assert not torch.equal(w, before)
        got = w.detach().reshape(16, -1)
        if memory_format == torch.contiguous_format:
            assert torch.equal(got, ref.detach())
        else:  # columns in (kh, kw, in) order: the same update up to summation order
            torch.testing.assert_close(got, ref.detach(), rtol=0, atol=1e-6)
    buf = opt.state[w]["momentum_buffer"]
    assert buf.shape == w.shape and buf.stride() == w.stride()


def test_filter_muon_refuses_vectors():
    with pytest.raises(ValueError, match=r"Muon needs tensors of 2 or more dimensions, got shape"):
        FilterMuon([nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.6)


# --- checkpoints and the schedule --------------------------------------------------------------


def _built(seed: int = 0):
    torch.manual_seed(seed)
    model = _net().to(memory_format=torch.channels_last)
    opt = build_optimizer(model, MUON, batch_size=16)
    schedule = LRSchedule(opt, ScheduleConfig(name="linear", pct_start=0.0, end_factor=0.0), 1, 8)
    return model, opt, schedule


def test_state_dict_round_trip_resumes_exactly():
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen))
    ]
    batches *= 5
    model, opt, schedule = _built()
    for x, y in batches[:2]:
        _step(model, opt, x, y, schedule)
    buffer = io.BytesIO()
    ckpt = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": schedule.state_dict()}
    torch.save(ckpt, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as cifar_hpo.checkpoint loads it
    assert len(saved["opt"]["optimizers"]) == 2 and saved["opt"]["optimizers"][1]["state"]

    resumed, opt2, schedule2 = _built(seed=5)  # other initial weights: all must come from ckpt
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    schedule2.load_state_dict(saved["sched"])
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for x, y in batches[2:]:
        _step(model, opt, x, y, schedule)
        _step(resumed, opt2, x, y, schedule2)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="optimizer state does not fit a chain of 2 optimizers"):
        opt2.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


def test_linear_schedule_scales_muon_like_sgd_and_onecycle_runs():
    model, opt, schedule = _built()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    start = [g["lr"] for g in opt.param_groups]
    for k in range(1, 4):
        _step(model, opt, x, y, schedule)
        for lr0, group in zip(start, opt.param_groups, strict=True):
            assert group["lr"] == pytest.approx(lr0 * (1 - k / 8))  # upstream: 1 - step / total
    assert opt.param_groups[-1]["lr"] == pytest.approx(0.24 * (1 - 3 / 8))  # Muon's group
    onecycle = LRSchedule(opt, ScheduleConfig(name="onecycle"), 2, 8)
    _step(model, opt, x, y, onecycle)
    assert onecycle.lr > 0


def test_grad_scaler_steps_or_skips_both_optimizers():
    model, opt, _ = _built()
    twin, twin_opt, _ = _built()
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)  # the engine's under CPU autocast
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    opt.zero_grad()
    scaler.scale(F.cross_entropy(model(x), y, label_smoothing=0.2)).backward()
    scaler.step(opt)
    scaler.update()
    _step(twin, twin_opt, x, y)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    model[0].weight.grad[0, 0, 0, 0] = float("nan")
    scaler.step(opt)  # skipped: no tensor moves, the filters (Muon) included
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))


# --- the engine --------------------------------------------------------------------------------


def test_one_step_muon_run_through_the_engine(tiny_data):
    cfg = tiny_config(
        epochs=0.25,  # 270 training images, batch 64: 4 steps per epoch -> 1 step
        batch_size=64,
        **{
            "model.name": "airbench94",
            "model.width": 0.125,
            "model.scale": 1 / 256,
            "model.head_std": 1.0,
            "optim.name": "muon",
            "optim.decoupled": True,
            "optim.lr": MUON.lr,
            "optim.wd": MUON.wd,
            "optim.momentum": 0.85,
            "optim.bias_scaler": MUON.bias_scaler,
            "optim.label_smoothing": 0.2,
            "schedule.name": "linear",
            "schedule.pct_start": 0,
            "schedule.end_factor": 0,
            "augment.policy": "alternating-flip-translate",
        },
    )
    torch.manual_seed(cfg.seed)
    untrained = create_model("airbench94", 10, **cfg.model.hparams)
    result = train(cfg, tiny_data, evaluate_test=False)
    assert result.status == "completed" and result.images_seen == 64
    assert math.isfinite(result.history[0]["train_loss"])
    assert math.isfinite(result.history[0]["val_loss"])
    conv = result.model.layers[1].conv1.weight
    assert not torch.equal(conv, untrained.layers[1].conv1.weight)
    assert conv.norm().item() == pytest.approx(math.sqrt(len(conv)), rel=0.2)  # renormalized


class _Interrupt(Callback):
    def on_epoch_end(self, state, record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt


def test_muon_run_resumes_exactly(tiny_data, tmp_path):
    cfg = tiny_config(
        epochs=2,
        batch_size=64,
        **{"model.name": "airbench94", "model.width": 0.125, "optim.name": "muon"},
    )
    full = train(cfg, tiny_data, evaluate_test=False)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, [Checkpointing(ckpt), _Interrupt()], evaluate_test=False)
    state = load_checkpoint(ckpt)
    assert state["step"] == 4 and len(state["optimizer"]["optimizers"]) == 2
    resumed = train(cfg, tiny_data, resume=state, evaluate_test=False)
    strip = ("epoch_seconds", "images_per_sec")
    assert [{k: v for k, v in r.items() if k not in strip} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in strip} for r in full.history
    ]
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


# --- the recipe and the model options it uses --------------------------------------------------


def test_recipe_holds_airbench94_muon_hyperparameters():
    book = load_recipes()
    recipe = next(r for r in book.recipes if r.name == "airbench94-muon")
    c = book.base_config(recipe)
    assert (c.model.name, c.epochs, c.batch_size, c.tta) == ("airbench94", 8, 2000, 2)
    assert c.model.hparams == {"scale": 1 / 256, "head_std": 1.0}
    assert c.data.val_fraction == 0 and c.augment.policy == "alternating-flip-translate"
    o = c.optim
    assert (o.name, o.muon_lr, o.muon_momentum, o.muon_ns_steps) == ("muon", 0.24, 0.6, 3)
    assert (o.momentum, o.nesterov, o.label_smoothing, o.lookahead_steps) == (0.85, True, 0.2, 0)
    lr, wd = torch_sgd_args(o.lr, o.wd, o.momentum, c.batch_size)
    assert lr == pytest.approx(0.67 * 2000, rel=1e-6)  # upstream head_lr on a summed loss
    assert lr * o.bias_scaler == pytest.approx(0.053 * 2000, rel=1e-6)  # its bias_lr
    assert lr * wd == pytest.approx(2e-6 * 2000, rel=1e-5)  # its decay per step
    s = c.schedule
    assert (s.name, s.pct_start, s.start_factor, s.end_factor) == ("linear", 0.0, 1.0, 0.0)
    assert recipe.epochs == 8 and recipe.cpu.epochs == 8


def test_head_std_rescales_the_head_init():
    torch.manual_seed(0)
    model = create_model("airbench94", width=0.25, head_std=1.0)
    assert model.head.weight.std().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="head_std must be a finite number >= 0, got -1.0"):
        create_model("airbench94", head_std=-1.0)


# --- one-line errors ---------------------------------------------------------------------------


def test_muon_without_conv_filters_is_a_one_line_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    with pytest.raises(ConfigError) as err:
        build_optimizer(model, OptimConfig(name="muon"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("optim.name=muon needs trainable conv filters (4-D parameters)")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"optim.muon_momentum": 1.0}, "optim.muon_momentum: Input should be less than 1"),
        ({"optim.muon_lr": 0}, "optim.muon_lr: Input should be greater than 0"),
        ({"optim.muon_ns_steps": 0}, "optim.muon_ns_steps: Input should be greater than"),
        ({"optim.muon_nesterov": True}, "unknown key 'optim.muon_nesterov'"),
        ({"optim.momentum": 0.0}, "optim.nesterov=true needs optim.momentum > 0"),
    ],
)
def test_bad_muon_values_fail_in_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        tiny_config(**{"optim.name": "muon", **overrides})
    assert fragment in str(err.value) and "\n" not in str(err.value)
