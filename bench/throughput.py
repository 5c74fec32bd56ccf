"""Training throughput of one model along three input paths, measured in one run.

What is measured (training images per second, forward + backward + optimizer step):

1. **pure compute**: the model trained on one synthetic float batch already in memory, with the
   same batch size, memory format (channels_last), autocast setting and optimizer as the engine.
   This is the ceiling for any input pipeline.
2. **ours**: :func:`cifar_hpo.engine.train` itself on the in-memory uint8 CIFAR-10 cache
   (``data.val_fraction=0``, ``evaluate_test=False``, ``augment.policy`` from ``--policy``),
   with ``data.train_fraction`` chosen so that one epoch is ``--steps`` optimizer steps. The
   first epoch is the warm-up; the figure is images / training seconds over the later epochs
   (the ``images_per_sec`` the engine records, pooled over those epochs).
3. **source-project-style**: what source projects 000/001 do: torchvision ``ImageFolder``
   over the JPEG class folders, per-image ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
   ``ToTensor``, ``Normalize`` in a ``DataLoader(num_workers=2, shuffle=True)``, training the
   same model with the same optimizer and autocast (batches are moved to the model's memory
   format, as our ``InputTransform`` does). Images over ``--steps`` steps after ``--warmup``
   steps.

A second section times the augmentation alone (uint8 batches through
:class:`cifar_hpo.augment.BatchAugmenter`, no model) for the policies ``none``, ``flip-crop``,
``strength`` 0.5 and ``seed002``, plus the batch gather and :class:`InputTransform` that the
engine runs every step, so the cost of albumentations is visible next to the model's.

The machine's speed varies (2 shared CPU cores here), so only ratios from one run are
comparable; the load average is recorded before and after each path. ``--rounds N`` repeats
the three paths interleaved and reports medians, which resists a neighbour's load spikes.
Each path also reports CPU milliseconds per image (the process's threads plus, for
source-project-style, its DataLoader workers), a second view that depends less on how much of
the CPU the run got.

Caveats when other processes share the cores: (1) with the default OpenMP wait policy,
torch's two threads spin at every barrier while the other one is descheduled; that time is
wasted and counts as CPU time too, so every path slows down several times over, and unevenly.
``OMP_WAIT_POLICY=PASSIVE`` (set it in the environment before Python starts) avoids most of
that. (2) source-project-style runs four busy threads (two torch threads, two workers) against
the two of the other paths, so on a loaded machine it gets a bigger share of the CPU than they
do and looks better than it would on an idle one.

Targets (issue): with ``--policy flip-crop`` and ``seed000_cnn``,
ours >= 0.95 x pure compute and ours >= 1.5 x source-project-style.

Batch size defaults to 256, between source project 000's 64 and the engine's default of 512:
large enough that per-step Python overhead does not dominate a model this small, small enough
that the default ``--steps 40`` (about 10k images per path) keeps the whole run near 1-2
minutes. Pass ``--batch-size 64`` for source project 000's own setting or ``--batch-size 512``
for ours.

Run (about 1-2 minutes with the defaults)::

    .venv/bin/python bench/throughput.py
    .venv/bin/python bench/throughput.py --model airbench --policy flip-translate --amp off
    .venv/bin/python bench/throughput.py --augment-cost only
    .venv/bin/python bench/throughput.py --rounds 3 --json bench/throughput.json

The JPEG archive ``../shared/datasets/cifar10-jpeg.tar.gz`` is extracted once into
``--jpeg-dir`` (default ``/tmp/cifar10-jpeg``) and reused afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from cifar_hpo.augment import POLICIES, build_augmenter
from cifar_hpo.callbacks import Callback
from cifar_hpo.config import TrainConfig, with_overrides
from cifar_hpo.data import CifarData, load_dataset
from cifar_hpo.device import (
    InputTransform,
    amp_enabled,
    autocast,
    cpu_has_fast_bf16,
    resolve_device,
    tune_malloc,
)
from cifar_hpo.engine import train
from cifar_hpo.models import create_model, list_models
from cifar_hpo.optim import build_optimizer
from cifar_hpo.provenance import stamp
from cifar_hpo.reports import rewrite_readme
from cifar_hpo.reproduce.recipes import recipe_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
TARGET_VS_COMPUTE = 0.95
TARGET_VS_SOURCE = 1.5
#: (label, policy, strength) timed by the augmentation-cost section.
AUGMENT_CASES = (
    ("none", "none", 0.0),
    ("flip-crop", "flip-crop", 0.0),
    ("strength 0.5", "strength", 0.5),
    ("seed002", "seed002", 0.0),
)


def load() -> tuple[float, float, float]:
    """The 1/5/15-minute load averages (runnable processes; 2.0 fills two cores)."""
    return os.getloadavg()


def make_config(args: argparse.Namespace, train_fraction: float = 1.0) -> TrainConfig:
    """The config the engine runs with; the other two paths reuse its model/optim/amp.

    With ``--recipe`` the recipe's config (model, batch size, optimizer with Lookahead,
    augmentation) is the base and ``--model``, ``--batch-size`` and ``--policy`` are ignored."""
    run = {
        "amp": args.amp,
        "device": args.device,
        "data.val_fraction": 0.0,
        "data.train_fraction": train_fraction,
        "epochs": args.epochs,
        "seed": 0,
    }
    if args.recipe:
        return with_overrides(recipe_config(args.recipe), run)
    return TrainConfig.from_dict(
        {
            "model.name": args.model,
            "batch_size": args.batch_size,
            "augment.policy": args.policy,
            "augment.strength": args.strength,
            **run,
        }
    )


def _train_step(model, optimizer, x, y, device, use_amp, label_smoothing=0.0) -> torch.Tensor:
    """One forward/backward/step, the way the engine does it (GradScaler is a no-op on CPU)."""
    with autocast(device, use_amp):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _build(config: TrainConfig, num_classes: int, device: torch.device):
    torch.manual_seed(config.seed)
    model = create_model(config.model.name, num_classes, **config.model.hparams)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    return model, build_optimizer(model, config.optim, config.batch_size), fmt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_compute(config: TrainConfig, num_classes: int, steps: int, warmup: int) -> dict:
    """Images/s of the bare training step on a synthetic batch already on the device."""
    device = resolve_device(config.device)
    use_amp = amp_enabled(device, config.amp)
    model, optimizer, fmt = _build(config, num_classes, device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch_size, 3, 32, 32, generator=g)
    x = x.to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (config.batch_size,), generator=g).to(device)
    for _ in range(warmup):
        _train_step(model, optimizer, x, y, device, use_amp)
    _sync(device)
    (cpu0, flt0), t0 = _usage(), time.perf_counter()
    for _ in range(steps):
        loss = _train_step(model, optimizer, x, y, device, use_amp)
        float(loss.detach())  # the engine reads the loss every CPU step; keep the comparison fair
    _sync(device)
    seconds, (cpu1, flt1) = time.perf_counter() - t0, _usage()
    return _rates(steps * config.batch_size, seconds, cpu1 - cpu0, flt1 - flt0, steps)


def _usage() -> tuple[float, int]:
    """(CPU seconds of all this process's threads, minor page faults so far)."""
    return time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _rates(images: int, seconds: float, cpu_seconds: float | None, faults: int, steps: int) -> dict:
    """images/s of wall time, CPU milliseconds per image (all threads, plus DataLoader workers
    where known) and minor page faults per step of the main process (fresh pages the kernel
    had to map and zero: glibc returning big freed buffers to the OS and faulting them back)."""
    return {
        "images_per_sec": images / seconds,
        "images": images,
        "seconds": seconds,
        "cpu_ms_per_image": None if cpu_seconds is None else 1e3 * cpu_seconds / images,
        "page_faults_per_step": faults / max(1, steps),
    }


class _CpuClock(Callback):
    """Process CPU time at the end of every epoch (to exclude the warm-up epoch)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = [_usage()]

    def on_epoch_end(self, state, record: dict[str, Any]) -> None:
        self.marks.append(_usage())


def measure_ours(config: TrainConfig, data: CifarData) -> dict:
    """Images/s of ``engine.train`` over the epochs after the first."""
    clock = _CpuClock()
    result = train(config, data, [clock], evaluate_test=False)
    if result.status != "completed":
        raise RuntimeError(f"engine run ended {result.status}: {result.message}")
    seen = [r["images_seen"] for r in result.history]
    per_epoch = [b - a for a, b in zip([0, *seen[:-1]], seen, strict=True)]
    rates = [r["images_per_sec"] for r in result.history]
    timed = slice(1, None) if len(rates) > 1 else slice(None)  # epoch 1 is the warm-up
    seconds = sum(i / r for i, r in zip(per_epoch[timed], rates[timed], strict=True))
    first = clock.marks[1] if len(rates) > 1 else clock.marks[0]
    cpu, faults = (b - a for a, b in zip(first, clock.marks[-1], strict=True))
    images = sum(per_epoch[timed])
    out = _rates(images, seconds, cpu, faults, images // config.batch_size)
    out["epoch_images_per_sec"] = rates
    out["steps_per_epoch"] = per_epoch[0] // config.batch_size
    return out


def ensure_jpeg_folder(archive: Path, dest: Path) -> Path:
    """Extract the JPEG class-folder archive into ``dest`` once; reuse it afterwards.

    Extraction goes to a temporary sibling folder that is renamed into place, so a concurrent
    or interrupted run never leaves a half-filled ``dest``.

    Returns:
        ``dest / "train"`` (ImageFolder layout: one sub-folder per class).
    """
    train_dir = dest / "train"
    if train_dir.is_dir():
        return train_dir
    if not archive.is_file():
        raise FileNotFoundError(f"JPEG archive not found: {archive}; pass --archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp.", dir=dest.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(dest)
        except OSError:  # another run won the race; use its copy
            if not train_dir.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return train_dir


def measure_source_project_style(
    config: TrainConfig,
    train_dir: Path,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    steps: int,
    warmup: int,
    workers: int,
) -> dict:
    """Images/s of ImageFolder + per-image torchvision transforms in a DataLoader."""
    from torchvision import datasets, transforms  # heavy import, only this path needs it

    device = resolve_device(config.device)
    use_amp = amp_enabled(device, config.amp)
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    dataset = datasets.ImageFolder(str(train_dir), transform=tf)
    num_classes = len(dataset.classes)
    model, optimizer, fmt = _build(config, num_classes, device)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    needed = warmup + steps
    if needed > len(loader):
        raise ValueError(f"--warmup + --steps = {needed} exceeds one epoch ({len(loader)} steps)")
    it = iter(loader)
    t_start = time.perf_counter()
    for _ in range(warmup):
        x, y = next(it)
        x = x.to(device, memory_format=fmt)
        _train_step(model, optimizer, x, y.to(device), device, use_amp)
    _sync(device)
    warmup_seconds = time.perf_counter() - t_start
    pids = [w.pid for w in getattr(it, "_workers", [])]
    (cpu0, flt0), wcpu0, t0 = _usage(), _cpu_of(pids), time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        x = x.to(device, non_blocking=True, memory_format=fmt)
        loss = _train_step(model, optimizer, x, y.to(device), device, use_amp)
        float(loss.detach())
    _sync(device)
    seconds, wcpu1 = time.perf_counter() - t0, _cpu_of(pids)
    cpu1, flt1 = _usage()
    cpu = None if wcpu0 is None or wcpu1 is None else cpu1 - cpu0 + wcpu1 - wcpu0
    del it  # shut the workers down before the next measurement
    out = _rates(steps * config.batch_size, seconds, cpu, flt1 - flt0, steps)
    out.update(warmup_seconds=warmup_seconds, workers=workers)
    return out


def _cpu_of(pids: list[int]) -> float | None:
    """User + system CPU seconds of processes (Linux ``/proc``); None where unreadable.

    The workers prefetch ``2 * workers`` batches ahead, so their CPU time over a window is
    the work for the batches consumed in it, give or take that many batches.
    """
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _rate(fn, batch_size: int, batches: int) -> float:
    fn()  # warm-up (first call builds index tensors, albumentations caches, ...)
    t = time.perf_counter()
    for _ in range(batches):
        fn()
    return batches * batch_size / (time.perf_counter() - t)


def measure_augment(data: CifarData, batch_size: int, batches: int, device_name: str) -> list:
    """Images/s of the per-step input work of the engine, without the model."""
    device = resolve_device(device_name)
    images = torch.from_numpy(data.train_images)
    gen = torch.Generator().manual_seed(0)
    n = images.shape[0]
    perm = torch.randperm(n, generator=gen)
    batch = images[perm[:batch_size]]
    to_input = InputTransform(data.mean, data.std, device, channels_last=True)
    rows = []

    def gather():
        start = int(torch.randint(0, n - batch_size, (1,), generator=gen))
        return images[perm[start : start + batch_size]]

    rows.append(
        {
            "stage": "gather (images[perm[i:j]])",
            "images_per_sec": _rate(gather, batch_size, batches),
        }
    )
    rows.append(
        {
            "stage": "InputTransform (uint8 -> float)",
            "images_per_sec": _rate(lambda: to_input(batch), batch_size, batches),
        }
    )
    for label, policy, strength in AUGMENT_CASES:
        aug = build_augmenter(policy, strength, data.mean, seed=0)
        aug.set_epoch(0)
        rate = _rate(lambda aug=aug: aug(batch, gen), batch_size, batches)
        rows.append({"stage": f"augment {label}", "images_per_sec": rate})
    # what the engine runs for flip/crop plans: gather + pad + crop + flip in one pass
    take = build_augmenter("flip-crop", 0.0, data.mean, seed=0).bind(images)

    def fused():
        start = int(torch.randint(0, n - batch_size, (1,), generator=gen))
        return take(perm[start : start + batch_size], gen)

    rate = _rate(fused, batch_size, batches)
    rows.append({"stage": "gather + flip-crop fused (engine)", "images_per_sec": rate})
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Training images/s: pure compute vs engine.train vs a source project's "
        "DataLoader.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="seed000_cnn", choices=list_models())
    p.add_argument(
        "--recipe", default=None, help="train a recipe of sweeps/recipes.yaml (e.g. airbench94)"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--policy", default="flip-crop", choices=POLICIES, help="augment.policy, engine path"
    )
    p.add_argument(
        "--strength", type=float, default=0.25, help="augment.strength (policy=strength)"
    )
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps per path (= one engine epoch)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    p.add_argument("--epochs", type=int, default=3, help="engine epochs; the first is warm-up")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps torch's default"
    )
    p.add_argument(
        "--mallopt",
        action="store_true",
        help="fix glibc's mmap/trim thresholds first (no page-fault churn; see docstring)",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers, source-project-style path"
    )
    p.add_argument("--rounds", type=int, default=1, help="repeat the three paths interleaved")
    p.add_argument("--augment-cost", choices=("on", "off", "only"), default="on")
    p.add_argument("--augment-batches", type=int, default=20)
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    p.add_argument("--jpeg-dir", type=Path, default=Path("/tmp/cifar10-jpeg"))
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument(
        "--readme", type=Path, default=None, help="rewrite this README's RESULTS:bench block"
    )
    return p.parse_args(argv)


def render_block(results: dict[str, Any], command: str, device, use_amp: bool) -> str:
    """The README ``RESULTS:bench`` block: the throughput table, the target ratios and the
    provenance stamp (commit, date, machine, CPU features, precision, versions)."""
    s = results["summary"]
    lines = [
        f"<!-- generated by `{command}`; do not edit by hand -->",
        "",
        f"`{results['model']}`, batch {results['batch_size']}, `{results['policy']}`, "
        f"{results['threads']} threads, {len(results['rounds'])} round(s) (medians):",
        "",
        "| path | images/s | vs pure compute | CPU ms/image |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "compute": "pure forward+backward on in-memory tensors",
        "ours": "ours (uint8 cache + batch augmentation + `engine.train`)",
        "source_style": (
            "source-project-style (ImageFolder JPEGs + per-image transforms, DataLoader)"
        ),
    }
    ratio = {"compute": 1.0, "ours": s["ours_vs_compute"], "source_style": s["source_vs_compute"]}
    for path, label in labels.items():
        ms = s["cpu_ms_per_image"].get(path)
        ms_text = f"{ms:.2f}" if ms is not None and ms == ms else "-"
        lines.append(f"| {label} | {s[path]:,.0f} | {ratio[path]:.2f}x | {ms_text} |")
    lines += [
        "",
        f"Ours / pure compute **{s['ours_vs_compute']:.2f}x** (target >= {TARGET_VS_COMPUTE}x: "
        f"{'met' if s['ours_vs_compute'] >= TARGET_VS_COMPUTE else 'not met'}); ours / "
        f"source-project-style **{s['ours_vs_source']:.2f}x**"
        + (
            f" (target >= {TARGET_VS_SOURCE}x for `seed000_cnn`: "
            f"{'met' if s['ours_vs_source'] >= TARGET_VS_SOURCE else 'not met'})."
            if results["model"] == "seed000_cnn"
            else " (the source-project-style target is set for `seed000_cnn`, whose steps are "
            "cheap)."
        ),
        "",
        stamp(command, device, use_amp, ROOT),
    ]
    return "\n".join(lines)


def _fmt_ratio(value: float, target: float) -> str:
    mark = "[green]ok[/green]" if value >= target else "[red]below[/red]"
    return f"{value:.2f}x (target >= {target}x, {mark})"


def print_summary(console: Console, summary: dict[str, Any], args: argparse.Namespace) -> None:
    """The throughput table and the two target ratios."""
    cpu = summary["cpu_ms_per_image"]
    title = f"Training images/s ({args.rounds} round(s); medians, ratios per round)"
    table = Table(title=title)
    for col in ("path", "images/s", "vs compute", "CPU ms/img", "CPU vs compute", "faults/step"):
        table.add_column(col, justify="left" if col == "path" else "right")
    labels = {
        "compute": "pure compute",
        "ours": "ours",
        "source_style": "source-project-style",
    }
    vs_compute = {"compute": 1.0, "ours": summary["ours_vs_compute"]}
    vs_compute["source_style"] = summary["source_vs_compute"]
    for path, label in labels.items():
        ms = cpu.get(path)
        known = ms is not None and ms == ms  # not None, not nan
        table.add_row(
            label,
            f"{summary[path]:.0f}",
            f"{vs_compute[path]:.2f}x",
            f"{ms:.2f}" if known else "-",
            f"{ms / cpu['compute']:.2f}x" if known and cpu["compute"] else "-",
            f"{summary['page_faults_per_step'][path]:.0f}",
        )
    console.print(table)
    console.print(
        "pure compute = synthetic batch in memory; ours = engine.train on the uint8 cache; "
        "source-project-style = ImageFolder JPEGs + per-image transforms, "
        f"DataLoader({args.workers} workers)"
    )
    console.print(
        f"ours / pure compute = {_fmt_ratio(summary['ours_vs_compute'], TARGET_VS_COMPUTE)}"
    )
    console.print(
        f"ours / source-project-style   = {_fmt_ratio(summary['ours_vs_source'], TARGET_VS_SOURCE)}"
    )
    if all(cpu.get(p) for p in ("compute", "ours", "source_style")):
        console.print(
            "by CPU cost (less sensitive to other load): ours / compute = "
            f"{cpu['compute'] / cpu['ours']:.2f}x, ours / source-project-style = "
            f"{cpu['source_style'] / cpu['ours']:.2f}x"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables and return the results dict."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.mallopt:
        tune_malloc()
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # keep the tables on one line each in logs
    data = load_dataset("cifar10", args.data_dir)
    device = resolve_device(args.device)
    config0 = make_config(args)
    use_amp = amp_enabled(device, config0.amp)
    args.model, args.batch_size = config0.model.name, config0.batch_size
    args.policy = config0.augment.policy
    results: dict[str, Any] = {
        "model": args.model,
        "recipe": args.recipe,
        "batch_size": args.batch_size,
        "policy": args.policy,
        "strength": args.strength if args.policy == "strength" else None,
        "amp": args.amp,
        "amp_enabled": use_amp,
        "channels_last": config0.channels_last,
        "device": str(device),
        "steps": args.steps,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "mallopt": args.mallopt,
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "machine": platform.processor() or platform.machine(),
        "load_start": load(),
        "rounds": [],
    }
    console.print(
        f"[bold]{args.model}[/bold] batch {args.batch_size}, policy {args.policy}, "
        f"amp {args.amp} -> {'bf16/fp16 autocast' if use_amp else 'fp32'}, channels_last "
        f"{config0.channels_last}, {torch.get_num_threads()} threads "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), device {device}; "
        f"load {results['load_start'][0]:.2f}"
    )

    cores = os.cpu_count() or 1
    if results["load_start"][0] > cores - 0.5:
        console.print(
            f"[yellow]warning: load {results['load_start'][0]:.1f} on {cores} cores; other "
            "processes share the CPU, so absolute images/s are low and ratios are noisy "
            "(try --rounds 3, and OMP_WAIT_POLICY=PASSIVE)[/yellow]"
        )

    if args.augment_cost != "only":
        n_train = len(data.train_labels)
        fraction = min(1.0, args.steps * args.batch_size / n_train)
        config = make_config(args, train_fraction=fraction)
        train_dir = ensure_jpeg_folder(args.archive, args.jpeg_dir)
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for name in ("compute", "ours", "source_style"):
                before = load()[0]
                if name == "compute":
                    m = measure_compute(config, data.num_classes, args.steps, args.warmup)
                elif name == "ours":
                    m = measure_ours(config, data)
                else:
                    m = measure_source_project_style(
                        config,
                        train_dir,
                        data.mean,
                        data.std,
                        args.steps,
                        args.warmup,
                        args.workers,
                    )
                m["load_before"], m["load_after"] = before, load()[0]
                row[name] = m
                console.print(
                    f"  round {r + 1} {name:<10} {m['images_per_sec']:8.0f} img/s "
                    f"({m['images']} images, {m['seconds']:.1f} s; load {before:.2f} -> "
                    f"{m['load_after']:.2f})"
                )
            rate = {
                name: row[name]["images_per_sec"] for name in ("compute", "ours", "source_style")
            }
            row["ours_vs_compute"] = rate["ours"] / rate["compute"]
            row["source_vs_compute"] = rate["source_style"] / rate["compute"]
            row["ours_vs_source"] = rate["ours"] / rate["source_style"]
            results["rounds"].append(row)

        rounds = results["rounds"]

        def med(path: str, key: str = "images_per_sec") -> float:
            vals = [rd[path][key] for rd in rounds if rd[path].get(key) is not None]
            return statistics.median(vals) if vals else float("nan")

        paths = ("compute", "ours", "source_style")
        summary: dict[str, Any] = {p: med(p) for p in paths}
        summary["cpu_ms_per_image"] = {p: med(p, "cpu_ms_per_image") for p in paths}
        summary["page_faults_per_step"] = {p: med(p, "page_faults_per_step") for p in paths}
        for key in ("ours_vs_compute", "source_vs_compute", "ours_vs_source"):
            summary[key] = statistics.median(rd[key] for rd in rounds)
        results["summary"] = summary
        print_summary(console, summary, args)

    if args.augment_cost != "off":
        rows = measure_augment(data, args.batch_size, args.augment_batches, args.device)
        results["augment_cost"] = rows
        ref = results.get("summary", {}).get("compute")
        table = Table(title=f"Per-step input work alone (uint8 batches of {args.batch_size})")
        table.add_column("stage")
        table.add_column("images/s", justify="right")
        table.add_column("us/image", justify="right")
        if ref:
            table.add_column("% of a compute step", justify="right")
        for row in rows:
            cells = [
                row["stage"],
                f"{row['images_per_sec']:.0f}",
                f"{1e6 / row['images_per_sec']:.1f}",
            ]
            if ref:
                cells.append(f"{100 * ref / row['images_per_sec']:.1f}%")
            table.add_row(*cells)
        console.print(table)

    results["load_end"] = load()
    console.print(
        f"load average (1/5/15 min): start {', '.join(f'{v:.2f}' for v in results['load_start'])}"
        f"; end {', '.join(f'{v:.2f}' for v in results['load_end'])}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        console.print(f"wrote {args.json}")
    if args.readme and "summary" in results:
        command = "python bench/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
        rewrite_readme(
            args.readme, render_block(results, command.strip(), device, use_amp), "bench"
        )
        console.print(f"rewrote the bench block of {args.readme}")
    return results


if __name__ == "__main__":
    main()
