"""Augmentation plans, batch flip/crop and the seeded albumentations pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_hpo.augment import (
    POLICIES,
    AugmentPlan,
    BatchAugmenter,
    build_augmenter,
    plan_for,
    random_crop,
    random_flip,
)

MEAN = (0.49, 0.48, 0.45)


def _images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


EXPECTED = {
    "none": AugmentPlan(),
    "flip": AugmentPlan(flip_p=0.5),
    "flip-translate": AugmentPlan(flip_p=0.5, crop_pad=2),
    "alternating-flip-translate": AugmentPlan(
        flip_p=0.5, crop_pad=2, flip_mode="alternating", pad_mode="reflect"
    ),
    "flip-crop": AugmentPlan(flip_p=0.5, crop_pad=4),
    "seed002": AugmentPlan(0.5, 4, (0.0625, 0.1, 15.0, 0.5), (16, 0.5), (0.2, 0.02, 0.5)),
    "seed003": AugmentPlan(0.5, 0, (0.0625, 0.1, 45.0, 0.5), (16, 0.5), None),
    "seed004": AugmentPlan(0.5, 0, (0.1, 0.1, 10.0, 0.5), (16, 0.5), None),
}


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_has_a_plan_that_runs(policy):
    plan = plan_for(policy, 0.5)
    if policy == "strength":
        assert plan.needs_albumentations and plan.crop_pad == 4
    else:
        assert plan == EXPECTED[policy]
        assert plan.needs_albumentations == policy.startswith("seed")
    aug = build_augmenter(policy, 0.5, MEAN, seed=0)
    aug.set_epoch(0)
    images = _images(4)
    out = aug(images.clone(), _gen())
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_strength_zero_is_identity():
    assert plan_for("strength", 0.0) == AugmentPlan()
    images = _images()
    out = build_augmenter("strength", 0.0, MEAN)(images, _gen())
    assert torch.equal(out, images)
    assert torch.equal(build_augmenter("none", 0.9, MEAN)(images, _gen()), images)


def _numbers(plan: AugmentPlan) -> list[float]:
    affine = plan.affine or (0.0, 0.0, 0.0, 0.0)
    cutout = plan.cutout or (0, 0.0)
    jitter = plan.jitter or (0.0, 0.0, 0.0)
    return [plan.flip_p, plan.crop_pad, *affine, *cutout, *jitter]


def test_strength_grows_monotonically_to_seed002():
    strengths = np.linspace(0.0, 1.0, 41)
    plans = [plan_for("strength", float(s)) for s in strengths]
    for a, b in zip(plans, plans[1:], strict=False):
        assert all(x <= y for x, y in zip(_numbers(a), _numbers(b), strict=True)), (a, b)
    for s, plan in zip(strengths, plans, strict=True):
        assert plan.needs_albumentations == (s > 0.25), s
    assert plan_for("strength", 0.125) == AugmentPlan(flip_p=0.5, crop_pad=2)
    assert plan_for("strength", 0.25) == AugmentPlan(flip_p=0.5, crop_pad=4)
    assert plan_for("strength", 1.0) == plan_for("seed002")


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_out_of_range(strength):
    with pytest.raises(ValueError, match="augment.strength must be in"):
        plan_for("strength", strength)


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown augment policy 'nope'; choose one of: strength"):
        plan_for("nope")
    with pytest.raises(ValueError, match="unknown augment policy"):
        build_augmenter("nope", 0.5, MEAN)


def test_random_flip_probabilities():
    images = _images()
    assert torch.equal(random_flip(images, 1.0, _gen()), images.flip(2))
    assert torch.equal(random_flip(images, 0.0, _gen()), images)
    out = random_flip(_images(200), 0.5, _gen())
    flipped = sum(torch.equal(o, i.flip(1)) for o, i in zip(out, _images(200), strict=True))
    assert 60 < flipped < 140


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    images = _images(16)
    pad = 4
    out = random_crop(images, pad, _gen(3))
    assert out.shape == images.shape and out.dtype == torch.uint8
    # the offsets drawn by random_crop: dy for every image, then dx
    g = _gen(3)
    dy = torch.randint(0, 2 * pad + 1, (16,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (16,), generator=g)
    padded = torch.zeros(16, 32 + 2 * pad, 32 + 2 * pad, 3, dtype=torch.uint8)
    padded[:, pad : pad + 32, pad : pad + 32] = images
    for i in range(16):
        y, x = int(dy[i]), int(dx[i])
        assert torch.equal(out[i], padded[i, y : y + 32, x : x + 32]), i
    # one image checked by hand: a shift by (dy - pad, dx - pad) with zeros coming in
    y, x = int(dy[0]) - pad, int(dx[0]) - pad
    expected = torch.zeros_like(images[0])
    src = images[0][max(y, 0) : 32 + min(y, 0), max(x, 0) : 32 + min(x, 0)]
    expected[max(-y, 0) : max(-y, 0) + src.shape[0], max(-x, 0) : max(-x, 0) + src.shape[1]] = src
    assert torch.equal(out[0], expected)
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 1


def test_random_crop_pad_zero_would_be_identity():
    images = _images()
    assert torch.equal(random_crop(images, 0, _gen()), images)


def test_seed002_augmenter_is_reproducible_per_epoch():
    images = _images(16)
    before = images.clone()
    a = BatchAugmenter(plan_for("seed002"), MEAN, seed=1)
    b = BatchAugmenter(plan_for("seed002"), MEAN, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    out_a = a(images, _gen(5))
    out_b = b(images, _gen(5))
    assert out_a.shape == (16, 32, 32, 3) and out_a.dtype == torch.uint8
    assert torch.equal(out_a, out_b)
    assert torch.equal(images, before)  # the input batch is not modified in place
    assert not torch.equal(out_a, images)
    b.set_epoch(4)
    assert not torch.equal(b(images, _gen(5)), out_a)  # another epoch draws other augmentations
    a.set_epoch(3)
    assert torch.equal(a(images, _gen(5)), out_a)  # re-seeding replays the epoch
    other = BatchAugmenter(plan_for("seed002"), MEAN, seed=2)
    other.set_epoch(3)
    assert not torch.equal(other(images, _gen(5)), out_a)


def test_cutout_fills_with_the_dataset_mean():
    mean = (0.5, 0.25, 0.75)
    aug = BatchAugmenter(AugmentPlan(cutout=(16, 1.0)), mean, seed=0)
    aug.set_epoch(0)
    out = aug(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), _gen())
    fill = torch.tensor([128, 64, 191], dtype=torch.uint8)
    for img in out:
        hole = (img != 0).any(-1)
        assert int(hole.sum()) == 16 * 16
        assert torch.equal(img[hole], fill.expand(256, 3))


@pytest.mark.parametrize(
    "plan",
    [
        AugmentPlan(flip_p=0.5, crop_pad=4),
        AugmentPlan(flip_p=0.5, crop_pad=2),
        AugmentPlan(flip_p=0.5),
        AugmentPlan(crop_pad=3),
        AugmentPlan(),
        plan_for("seed004"),
    ],
    ids=["flip-crop", "flip-translate", "flip", "crop", "none", "seed004"],
)
def test_bound_batch_maker_equals_gather_then_augment(plan):
    images = _images(64, seed=3)
    aug = BatchAugmenter(plan, MEAN, seed=0)
    take = aug.bind(images)
    g_ref, g_bound = _gen(5), _gen(5)
    for _ in range(3):  # consecutive batches: the generators must stay in step too
        idx = torch.randperm(64, generator=_gen(7))[:16]
        aug.set_epoch(0)
        expected = aug(images.index_select(0, idx), g_ref)
        aug.set_epoch(0)
        got = take(idx, g_bound)
        assert got.shape == (16, 32, 32, 3) and got.dtype == torch.uint8
        assert torch.equal(got, expected)
    if plan.flip_p and plan.crop_pad:  # and it did augment: some outputs differ from the inputs
        assert not torch.equal(got, images.index_select(0, idx))
