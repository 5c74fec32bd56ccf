"""Device selection, mixed precision and the uint8-batch -> model-input conversion."""

from __future__ import annotations

import contextlib
import ctypes

import torch

from cifar_hpo.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``.

    Raises:
        ValueError: an unknown device string, or a device that is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use auto or cpu")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bfloat16 matmuls/convs natively (AMX or AVX512-BF16)."""
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def amp_enabled(device: torch.device, amp: str) -> bool:
    """Whether to train under autocast: always for ``on``; for ``auto`` on CUDA, and on CPUs
    with native bfloat16 (AMX/AVX512-BF16), where bf16 autocast measured 2.4-2.6x the fp32
    images/s for airbench, resnet20 and seed000_cnn on an AMX Xeon, and 1.5-1.6x for airbench and
    seed000_cnn on an AVX512-BF16 EPYC without AMX (bench/throughput.py --amp auto vs off, 2
    threads). MPS stays fp32."""
    if amp == "on":
        return True
    if amp == "off":
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the device (bf16 on CPU, fp16 on CUDA/MPS) or a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, use_amp: bool) -> torch.amp.GradScaler:
    """The gradient scaler for a run: it skips optimizer steps whose gradients are not finite.

    * CUDA + fp16 autocast: the usual dynamic loss scaling (fp16's range is small).
    * CPU + bf16 autocast: initial scale 1 (bf16 has fp32's range, so nothing is rescaled and a
      run with only finite gradients is bit-identical to one without a scaler), kept for the
      skip: CPU bf16 kernels can return non-finite gradients from a finite loss. Measured with
      source project 002's cifarnet recipe: without the skip, bf16 runs on an AMX Xeon and on an
      AVX512-BF16 EPYC turned every weight NaN at step 4 and step 60 of epoch 1; fp32 on CPU
      and fp16 + GradScaler on CUDA trained.
    * Otherwise (fp32, MPS): a disabled scaler, whose calls pass straight through.
    """
    if use_amp and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    if use_amp and device.type == "cpu":
        return torch.amp.GradScaler("cpu", init_scale=1.0)
    return torch.amp.GradScaler(device.type, enabled=False)


class InputTransform:
    """uint8 batch (B, 32, 32, 3) -> normalized float (B, 3, 32, 32) on the target device.

    The NHWC -> NCHW permute yields channels_last strides for free; ``channels_last=False``
    makes the result contiguous NCHW instead. uint8 -> float and ``(x / 255 - mean) / std`` are
    one fused ``addcmul`` pass (type promotion inside the kernel), not three.
    """

    def __init__(self, mean, std, device: torch.device, channels_last: bool = True):
        self.device = device
        self.channels_last = channels_last
        self.scale = (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1).to(device)
        self.neg_shift = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        if self.device.type == "mps":  # no mixed-dtype addcmul there
            x = x.float()
        x = torch.addcmul(self.neg_shift, x, self.scale)
        return x if self.channels_last else x.contiguous()


def tune_malloc(mmap_threshold: int = 1 << 28, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed buffers in glibc's heap instead of unmapping them (Linux/glibc only).

    By default glibc serves blocks above a (sliding, 128 KiB..32 MiB) threshold with ``mmap``
    and trims the heap top back to the OS; a training step frees and reallocates megabytes of
    activations, so the kernel maps and zeroes fresh pages every step. Fixed thresholds stop
    that. Returns False where ``mallopt`` is unavailable.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(
        libc.mallopt(m_mmap_threshold, mmap_threshold)
        and libc.mallopt(m_trim_threshold, trim_threshold)
    )
