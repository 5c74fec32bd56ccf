"""Score an exported model on the CIFAR test split with plain PyTorch (no cifar_hpo import).

Checks the export contract end to end: ``cifar-hpo best --export model.pt`` followed by::

    python bench/score_exported.py model.pt data/cache/cifar10.npz

prints the top-1 test accuracy, which must equal the champion's test accuracy that the sweep
reported (same weights, same normalization and TTA, all inside the exported program).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def main(model_path: str, cache_path: str) -> None:
    """Load the torch.export file and the uint8 cache, print accuracy and timing as JSON."""
    extra = {"cifar_hpo.json": ""}
    with open(model_path, "rb") as f:
        model = torch.export.load(f, extra_files=extra).module()
    meta = json.loads(extra["cifar_hpo.json"])
    cache = np.load(cache_path)
    images, labels = cache["test_images"], torch.from_numpy(cache["test_labels"]).long()
    correct, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(images), 1000):
            x = torch.from_numpy(images[start : start + 1000]).permute(0, 3, 1, 2).float() / 255
            correct += int((model(x).argmax(1) == labels[start : start + 1000]).sum())
    assert "cifar_hpo" not in sys.modules
    print(
        json.dumps(
            {
                "test_acc": correct / len(images),
                "n": len(images),
                "seconds": round(time.perf_counter() - t0, 2),
                "model": meta.get("model"),
                "trial": meta.get("trial"),
                "reported_test_acc": meta.get("test_acc"),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
