"""Score an exported model on the CIFAR test set in a process that never imports cifar_hpo.

What a user of ``cifar-hpo best --export model.pt`` has: one ``torch.export`` file. This script
loads it with ``torch.export.load`` (its contract, from the file's own ``cifar_hpo.json``:
float32 (B, 3, 32, 32) RGB in [0, 1] in, logits out; normalization and test-time augmentation
are inside), reads the test images from the dataset cache (``data/cache/<name>.npz``: uint8
(N, 32, 32, 3) images and int64 labels, read with numpy) and prints top-1 accuracy, so the
champion's figure can be reproduced without the project's code. It refuses to run if
``cifar_hpo`` got imported (a test checks that too)::

    .venv/bin/python bench/score_exported.py model.pt
    .venv/bin/python bench/score_exported.py model.pt data/cache/cifar10.npz --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def score(path: str | Path, cache: str | Path, batch: int = 500) -> dict:
    """Top-1 accuracy (a fraction) of the exported model on the cache's test split, and the
    file's own metadata (``cifar_hpo.json``: class names, TTA, trial, claimed test accuracy)."""
    extra = {"cifar_hpo.json": ""}
    with open(path, "rb") as f:
        module = torch.export.load(f, extra_files=extra).module()
    data = np.load(cache)
    images, labels = data["test_images"], data["test_labels"]
    correct, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
            correct += int((module(x).argmax(1).numpy() == labels[i : i + batch]).sum())
    return {
        "test_acc": correct / len(labels),
        "images": int(len(labels)),
        "seconds": time.perf_counter() - t0,
        "metadata": json.loads(extra["cifar_hpo.json"] or "{}"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("cache", type=Path, nargs="?", default=Path("data/cache/cifar10.npz"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = score(args.model, args.cache)
    if any(name == "cifar_hpo" or name.startswith("cifar_hpo.") for name in sys.modules):
        sys.exit("cifar_hpo was imported: the score would not be independent of it")
    meta = result["metadata"]
    claimed = meta.get("test_acc")
    print(
        f"{args.model}: test top-1 {100 * result['test_acc']:.2f} % on {result['images']:,} "
        f"images ({result['seconds']:.1f} s)"
        + (f"; the file says {100 * claimed:.2f} %" if claimed is not None else "")
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
