"""Batch-1 CPU inference latency of a model, measured with one fixed protocol.

Protocol (so that figures from one machine compare): the model in eval mode on the CPU, one
image of zeros (1, 3, 32, 32) in float32, ``torch.inference_mode``, one intra-op thread
(``torch.set_num_threads(1)``, restored afterwards), ``warmup`` untimed calls, then the median of
``repeats`` timed calls (``time.perf_counter``), in milliseconds. The weights do not matter, only
the architecture: an untrained network measures the same.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

WARMUP = 10
REPEATS = 50


def measure_latency_ms(
    model: nn.Module,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    warmup: int = WARMUP,
    repeats: int = REPEATS,
) -> float:
    """Median batch-1 CPU forward time of ``model`` in milliseconds (see the module protocol).

    Args:
        model: a classifier taking (1, C, H, W) float32; must be on the CPU.
        image_shape: (C, H, W) of one input image.
        warmup: untimed calls first (>= 0).
        repeats: timed calls (>= 1); the median is returned.

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    threads = torch.get_num_threads()
    was_training = model.training
    x = torch.zeros(1, *image_shape)
    model.eval()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return 1000.0 * statistics.median(times)
