"""Classify image files with an exported model (source project 001's inference, any size or
mode)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cifar_hpo.data import DatasetError
from cifar_hpo.export import load_classifier

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Prediction:
    """Top class of one image: ``confidence`` is its softmax probability in [0, 1]."""

    path: Path
    label: str
    confidence: float
    top: list[tuple[str, float]]


def collect_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, recursive).

    Raises:
        DatasetError: a path that does not exist or a folder with no images.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DatasetError(f"{p} does not exist")
    return out


def load_image(path: Path) -> torch.Tensor:
    """Any size/mode -> float32 (3, 32, 32) RGB in [0, 1] (bilinear-antialiased resize).

    Raises:
        DatasetError: the file is not a readable image (names the file).
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if rgb.size != (32, 32):
                rgb = rgb.resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(rgb, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def predict_files(model_path: str | Path, paths: list[Path], top_k: int = 3) -> list[Prediction]:
    """Predictions for image files/folders with an exported model file.

    Raises:
        CheckpointError: the model file is missing or not a cifar-hpo export.
        DatasetError: missing paths or unreadable images.
    """
    model, meta = load_classifier(model_path)
    names = meta["class_names"]
    files = collect_images([Path(p) for p in paths])
    preds: list[Prediction] = []
    for start in range(0, len(files), 256):
        chunk = files[start : start + 256]
        x = torch.stack([load_image(f) for f in chunk])
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        for f, v, i in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            top = [(names[j], p) for j, p in zip(i, v, strict=True)]
            preds.append(Prediction(f, top[0][0], top[0][1], top))
    return preds
