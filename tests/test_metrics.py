"""compute_metrics on hand-made logits with known answers; flip TTA in predict_logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cifar_hpo.device import InputTransform
from cifar_hpo.metrics import compute_metrics, predict_logits

NAMES3 = ("cat", "dog", "frog")

# 4 samples, 3 classes: predictions 0, 1, 2, 0 for labels 0, 1, 2, 2 (the last one wrong)
LOGITS3 = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 2.0], [3.0, 2.0, 1.0]])
LABELS3 = torch.tensor([0, 1, 2, 2])


def _ce(logits, labels):
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[y]
    return total / len(labels)


def test_known_answers_three_classes():
    report = compute_metrics(LOGITS3, LABELS3, NAMES3)
    m = report.metrics
    assert m["acc"] == pytest.approx(0.75)
    assert m["top3"] == pytest.approx(1.0) and m["top5"] == pytest.approx(1.0)  # k clamped to 3
    assert m["loss"] == pytest.approx(_ce(LOGITS3, LABELS3), rel=1e-6)
    # precision: cat 1/2, dog 1, frog 1; recall: cat 1, dog 1, frog 1/2
    assert m["precision_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert report.confusion.dtype == np.int64
    assert report.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    by_name = {r["name"]: r for r in report.per_class}
    assert [r["name"] for r in report.per_class] == list(NAMES3)
    assert by_name["cat"]["precision"] == pytest.approx(0.5)
    assert by_name["cat"]["recall"] == pytest.approx(1.0)
    assert by_name["frog"]["recall"] == pytest.approx(0.5)
    assert by_name["frog"]["f1"] == pytest.approx(2 / 3)
    assert [r["support"] for r in report.per_class] == [1, 1, 2]


def test_top_k_with_more_classes():
    # 6 classes; the true class ranks 1st, 2nd, 4th and 6th
    logits = torch.tensor(
        [[6.0, 5, 4, 3, 2, 1], [5.0, 6, 4, 3, 2, 1], [6.0, 5, 4, 3, 2, 1], [6.0, 5, 4, 3, 2, 1]]
    )
    labels = torch.tensor([0, 0, 3, 5])
    report = compute_metrics(logits, labels, tuple("abcdef"))
    assert report.metrics["acc"] == pytest.approx(0.25)
    assert report.metrics["top3"] == pytest.approx(0.5)
    assert report.metrics["top5"] == pytest.approx(0.75)
    assert report.confusion.sum() == 4 and report.confusion[0].tolist() == [1, 1, 0, 0, 0, 0]


def test_text_report_lists_classes_and_averages():
    text = compute_metrics(LOGITS3, LABELS3, NAMES3).text_report()
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    frog = next(line for line in lines if line.split()[:1] == ["frog"])
    assert frog.split() == ["frog", "1.0000", "0.5000", "0.6667", "2"]
    macro = next(line for line in lines if "macro avg" in line)
    assert macro.split()[-1] == "4" and "0.8333" in macro
    assert any(line.split()[:2] == ["accuracy", "0.7500"] for line in lines)
    assert "top-3 acc" in text and "top-5 acc" in text


class _Linear(nn.Module):
    """A fixed linear map of the whole image, left-right asymmetric, with an eval-only path."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(3 * 32 * 32, 4, generator=g))
        self.drop = nn.Dropout(0.9)  # would scramble the logits if eval mode were not used
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.drop(x.reshape(x.shape[0], -1)) @ self.weight


def test_predict_logits_tta_averages_image_and_mirror():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (7, 32, 32, 3), dtype=torch.uint8, generator=g)
    to_input = InputTransform((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.device("cpu"))
    model = _Linear()
    model.train()
    with torch.no_grad():
        plain = to_input(images).reshape(7, -1) @ model.weight
        mirror = to_input(images.flip(2)).reshape(7, -1) @ model.weight  # HWC: width is dim 2
    out = predict_logits(model, images, to_input, batch_size=3, tta=False)
    assert out.shape == (7, 4) and out.dtype == torch.float32
    assert torch.allclose(out, plain, atol=1e-4)
    out_tta = predict_logits(model, images, to_input, batch_size=3, tta=True)
    assert torch.allclose(out_tta, 0.5 * (plain + mirror), atol=1e-4)
    assert not torch.allclose(out_tta, plain, atol=1e-2)
    assert model.training  # the caller's mode is restored
    assert model.modes and not any(model.modes)  # every forward ran in eval mode
    assert not out_tta.requires_grad
