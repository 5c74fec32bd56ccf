"""Batch-1 CPU latency of a model, measured with one fixed protocol so that numbers compare
across runs, commands and objectives (``cifar-hpo compare``, multi-objective studies)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from cifar_hpo.errors import ConfigError

#: defaults of :func:`measure_latency_ms`: untimed calls first, then timed ones
WARMUP = 10
REPEATS = 50


def measure_latency_ms(
    model: nn.Module,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    warmup: int = WARMUP,
    repeats: int = REPEATS,
) -> float:
    """Median wall time of one forward pass on one image, on the CPU with one thread.

    Protocol:

    1. the CPU (a model on another device is timed on a CPU copy), eval mode,
       ``torch.inference_mode``, ``torch.set_num_threads(1)`` (restored afterwards, as is every
       submodule's train/eval flag);
    2. one fixed input image ``(1, *image_shape)`` of uniform [0, 1) values, seeded, in the dtype
       of the model's first floating-point parameter (float32 for ours);
    3. ``warmup`` untimed calls, then ``repeats`` calls timed one by one with
       ``time.perf_counter``; the median of those is returned.

    One thread and the median make the number depend little on what the other cores are doing.

    Args:
        model: maps float32 (B, C, H, W) to anything (logits (B, num_classes) for ours).
        image_shape: (C, H, W) of one input image.
        warmup: untimed calls before timing, >= 0.
        repeats: timed calls, >= 1.

    Returns:
        The median latency in milliseconds (positive, finite).

    Raises:
        ValueError: ``warmup`` < 0 or ``repeats`` < 1.
    """
    if warmup < 0 or repeats < 1:
        raise ConfigError(f"latency needs warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    first = next(model.parameters(), None)
    if first is not None and first.device.type != "cpu":
        import copy

        model = copy.deepcopy(model).cpu()
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((1, *image_shape), generator=generator).to(dtype)
    modes = {m: m.training for m in model.modules()}
    threads = torch.get_num_threads()
    times = []
    try:
        torch.set_num_threads(1)
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        for m, training in modes.items():
            m.training = training
    return max(statistics.median(times) * 1e3, 1e-6)  # a clock tick of 0 is not a latency
