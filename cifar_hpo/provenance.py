"""Provenance of a measured figure: commit, date, machine, precision and library versions.

Every results block of the README is written by a command that stamps these (the reproduced
table, ``bench/recipe_check.py``, ``bench/throughput.py``).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from cifar_hpo.device import cpu_has_fast_bf16


def git_head(folder: str | Path = ".") -> tuple[str, bool] | None:
    """(full ``HEAD`` hash, tracked files differ) of the repository at ``folder``, or None
    outside a repository."""

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
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head, bool(dirty)


def git_commit(folder: str | Path = ".") -> str:
    """``HEAD``'s short hash at ``folder`` (``+ uncommitted changes`` when tracked files
    differ), or ``unknown`` outside a repository."""
    found = git_head(folder)
    if found is None:
        return "unknown"
    head, dirty = found
    return f"{head[:7]} + uncommitted changes" if dirty else head[:7]


@functools.lru_cache(maxsize=1)
def _code_revision() -> tuple[str, bool] | None:
    return git_head(Path(__file__).resolve().parent.parent)


def run_tags(config) -> dict[str, str]:
    """Provenance tags of a training run (MLflow's own source tags fill the runs table's Source
    column): git commit and dirty flag of this code, library versions, CPU model and features,
    device, precision and seed."""
    from cifar_hpo.device import amp_enabled, resolve_device

    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": "cifar-hpo",
        "cifar_hpo.versions": ", ".join(f"{k} {v}" for k, v in library_versions().items()),
        "cifar_hpo.host": host_text(),
        "cifar_hpo.cpu_features": cpu_features(),
        "cifar_hpo.seed": str(config.seed),
    }
    try:
        device = resolve_device(config.device)
        tags["cifar_hpo.device"] = str(device)
        tags["cifar_hpo.precision"] = precision_text(device, amp_enabled(device, config.amp))
    except ValueError:
        pass  # the run fails on it with its own message
    revision = _code_revision()
    if revision is not None:
        tags["mlflow.source.git.commit"] = revision[0]
        tags["cifar_hpo.git_dirty"] = str(revision[1]).lower()
    return tags


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
