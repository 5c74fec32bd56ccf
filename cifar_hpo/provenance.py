"""Provenance of a measured figure: commit, date, machine, precision and library versions.

Every results block of the README is written by a command that stamps these (the reproduced
table, ``bench/recipe_check.py``, ``bench/throughput.py``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from cifar_hpo.device import cpu_has_fast_bf16


def git_commit(folder: str | Path = ".") -> str:
    """``git rev-parse --short HEAD`` of ``folder`` (``+ uncommitted changes`` when tracked
    files differ), or ``unknown`` outside a repository."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


def host_text() -> str:
    """CPU model and core count, plus the GPU when CUDA is available."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text


def cpu_features() -> str:
    """``AMX``, ``AVX512-BF16``, ``AVX512``, ``AVX2 only`` or ``no AVX2``: what decides a
    CPU's precision (bf16 autocast or fp32) and roughly its speed."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if cpu_has_fast_bf16():
        return "AVX512-BF16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "AVX512" if "avx512f" in flags else "AVX2 only" if "avx2" in flags else "no AVX2"


def precision_text(device: torch.device, amp: bool) -> str:
    """``bf16 autocast``, ``fp16 autocast`` or ``fp32`` for a run on ``device``."""
    if not amp:
        return "fp32"
    return ("bf16" if device.type == "cpu" else "fp16") + " autocast"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a training figure."""
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def now_text() -> str:
    """The current UTC time as ``YYYY-MM-DD HH:MM UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def stamp(command: str, device: torch.device, amp: bool, folder: str | Path = ".") -> str:
    """Two markdown lines: command, date, commit and versions; machine, CPU features, device
    and precision."""
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return (
        f"Command: `{command}`; finished {now_text()}; commit `{git_commit(folder)}`; "
        f"{versions}.  \n"
        f"Machine: {host_text()}; CPU features: {cpu_features()}; device {device}, precision "
        f"{precision_text(device, amp)}."
    )
