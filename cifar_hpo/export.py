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

import contextlib
import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_hpo.checkpoint import CheckpointError
from cifar_hpo.tta import tta_logits

META_FILE = "cifar_hpo.json"
FORMAT = "cifar-hpo-export/1"


class NormalizedClassifier(nn.Module):
    """Wraps a CIFAR model so it takes RGB images in [0, 1].

    Args:
        model: maps normalized (B, 3, 32, 32) float images to logits (B, C).
        mean, std: per-channel statistics in [0, 1] used at training time.
        tta: test-time augmentation level (0 none, 1 mirror, 2 mirror + one-pixel
            translations; see :func:`cifar_hpo.tta.tta_logits`); ``True``/``False`` mean 1/0.
    """

    def __init__(self, model: nn.Module, mean, std, tta: int = 0):
        super().__init__()
        self.model = model
        self.tta = int(tta)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (B, 3, 32, 32) in [0, 1] -> logits (B, num_classes)."""
        x = (x - self.mean) / self.std
        return tta_logits(self.model, x, self.tta)


def export_classifier(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: tuple[str, ...] | list[str],
    mean,
    std,
    tta: int = 0,
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
        "tta": int(tta),
        "input": "float32 (B, 3, 32, 32) RGB in [0, 1]; output logits (B, num_classes)",
        **(metadata or {}),
    }
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: any extension, no ".pt2" warning
        torch.export.save(program, f, extra_files={META_FILE: json.dumps(meta)})
    return path


# Members a plain exported program has (under the archive's root folder). Anything else, such
# as compiled AOTInductor libraries, custom/opaque objects or legacy ``.pt`` weight files, could
# run code while torch.export.load reads it.
_PT2_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|extra/[\w.-]+"
    r"|data/weights/([\w.-]+_weights_config\.json|weight_\d+)"
    r"|data/constants/([\w.-]+_constants_config\.json|tensor_\d+)"
    r"|data/sample_inputs/[\w.-]+\.pt"
)


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{str(path)!r} is not a model exported by cifar-hpo ({why}); "
        "expected a file written by: cifar-hpo best --export FILE"
    )


def check_exported_archive(path: str | Path) -> None:
    """Check, without unpickling anything, that ``path`` is a plain ``torch.export`` archive
    whose loading cannot run code: only the members of a plain exported program, no payload
    marked as pickled, and sample inputs that load with ``weights_only=True``. (torch.export.load
    itself unpickles such payloads with ``weights_only=False``.)

    Raises:
        CheckpointError: not a zip/pt2 archive, or a member that could run code (named).
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _refuse(path, f"not a torch.export archive: {err}") from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or f"{next(iter(roots))}/archive_format" not in names:
            raise _refuse(path, "not a torch.export archive")
        root = next(iter(roots)) + "/"
        if zf.read(root + "archive_format").strip() != b"pt2":
            raise _refuse(path, "not a torch.export archive")
        if root + "extra/" + META_FILE not in names:
            raise _refuse(path, "a torch.export program without cifar-hpo metadata")
        for name in names:
            member = name[len(root) :]
            if not _PT2_MEMBERS.fullmatch(member):
                raise _refuse(path, f"unexpected member {member!r}, refused: it could run code")
            if member.endswith(("_weights_config.json", "_constants_config.json")):
                try:
                    config = json.loads(zf.read(name)).get("config", {})
                except (ValueError, AttributeError):
                    raise _refuse(path, f"unreadable {member!r}") from None
                for fqn, meta in config.items():
                    if not isinstance(meta, dict) or meta.get("use_pickle", True):
                        raise _refuse(path, f"{fqn!r} is stored as a pickle, refused")
            elif member.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
                except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
                    # torch wraps the unpickler's one-line reason in a long generic text
                    inner = err.__context__ if isinstance(err.__context__, Exception) else err
                    reason = (str(inner).strip().splitlines() or [type(err).__name__])[0][:150]
                    raise _refuse(
                        path, f"{member!r} refused by weights_only loading: {reason}"
                    ) from None


@contextlib.contextmanager
def _weights_only_loads():
    """Every ``torch.load`` inside is ``weights_only=True``, whatever its caller asks."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def load_classifier(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load an exported classifier: (callable module, metadata). Nothing is unpickled except
    tensors (``weights_only=True``); see :func:`check_exported_archive`.

    Raises:
        CheckpointError: missing file, not a torch.export archive, one without cifar-hpo
            metadata (a model file that is not ours), or one holding pickled payloads.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} does not exist")
    check_exported_archive(path)
    extra = {META_FILE: ""}
    try:
        with open(path, "rb") as f, _weights_only_loads():
            program = torch.export.load(f, extra_files=extra)
    except Exception as err:  # torch raises many types for foreign files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise _refuse(path, f"torch.export load failed: {first}") from None
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
