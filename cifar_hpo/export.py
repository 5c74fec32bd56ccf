"""Self-contained model files: normalization and class names travel with the weights.

The exported file is a ``torch.export`` program (``torch.export.save``), so plain PyTorch loads
it without pickle and without importing cifar_hpo::

    import json, torch
    extra = {"cifar_hpo.json": ""}
    with open("model.pt", "rb") as f:
        program = torch.export.load(f, extra_files=extra)
    meta = json.loads(extra["cifar_hpo.json"])          # class_names, input contract, metrics
    logits = program.module()(x)                          # x: float32 (B, 3, 32, 32) RGB in [0, 1]

Input contract: float32 tensor (B, 3, 32, 32), RGB, values in [0, 1] (``ToTensor()`` scale);
the per-channel normalization is inside the program. Output: logits (B, num_classes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_hpo.checkpoint import CheckpointError

META_FILE = "cifar_hpo.json"
FORMAT = "cifar-hpo-export/1"


class NormalizedClassifier(nn.Module):
    """Wraps a CIFAR model so it takes RGB images in [0, 1].

    Args:
        model: maps normalized (B, 3, 32, 32) float images to logits (B, C).
        mean, std: per-channel statistics in [0, 1] used at training time.
        tta: average the logits of each image and its mirror image (flip TTA).
    """

    def __init__(self, model: nn.Module, mean, std, tta: bool = False):
        super().__init__()
        self.model = model
        self.tta = tta
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (B, 3, 32, 32) in [0, 1] -> logits (B, num_classes)."""
        x = (x - self.mean) / self.std
        logits = self.model(x)
        if self.tta:
            logits = 0.5 * (logits + self.model(x.flip(3)))
        return logits


def export_classifier(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: tuple[str, ...] | list[str],
    mean,
    std,
    tta: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (eval mode, fp32, CPU) as a ``torch.export`` program with metadata.

    The batch dimension is dynamic. Metadata (JSON, stored as an extra file ``cifar_hpo.json``)
    holds ``format``, ``class_names``, ``mean``, ``std``, ``input`` (the contract) and whatever
    ``metadata`` adds (model name, trial, metrics).

    Raises:
        OSError: the path cannot be written.
    """
    path = Path(path)
    wrapper = NormalizedClassifier(model, mean, std, tta).float().cpu().eval()
    example = torch.rand(4, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},))
    meta = {
        "format": FORMAT,
        "class_names": list(class_names),
        "mean": list(mean),
        "std": list(std),
        "tta": tta,
        "input": "float32 (B, 3, 32, 32) RGB in [0, 1]; output logits (B, num_classes)",
        **(metadata or {}),
    }
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: any extension, no ".pt2" warning
        torch.export.save(program, f, extra_files={META_FILE: json.dumps(meta)})
    return path


def load_classifier(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load an exported classifier: (callable module, metadata).

    Raises:
        CheckpointError: missing file, not a torch.export archive, or one without cifar-hpo
            metadata (a model file that is not ours).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} does not exist")
    extra = {META_FILE: ""}
    try:
        with open(path, "rb") as f:
            program = torch.export.load(f, extra_files=extra)
    except Exception as err:  # torch raises many types for foreign files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"{str(path)!r} is not a model exported by cifar-hpo (torch.export load failed: "
            f"{first})"
        ) from None
    try:
        meta = json.loads(extra[META_FILE])
    except json.JSONDecodeError:
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch.export program without cifar-hpo metadata; "
            "export one with: cifar-hpo best --export model.pt"
        )
    return program.module(), meta
