"""Tiny synthetic CIFAR-style datasets, written in the real on-disk formats.

Plain functions, importable from tests as ``from synthetic import ...`` (``tests/`` is on
``sys.path`` under pytest). Images are learnable: each class has its own mean colour and a
class-specific low-frequency pattern, plus per-image noise, so a small CNN beats chance within
an epoch or two. Class prototypes depend only on the number of classes, so sets drawn with
different seeds (train vs test) share them.
"""

from __future__ import annotations

import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_hpo.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CifarData,
    compute_checksum,
)

_PROTO_SEED = 1234  # fixed: prototypes must not depend on the sample seed


def _prototypes(num_classes: int) -> np.ndarray:
    """Per-class mean images, float32 (num_classes, 32, 32, 3), values roughly in [40, 215]."""
    rng = np.random.default_rng(_PROTO_SEED + num_classes)
    colours = rng.uniform(50, 205, size=(num_classes, 1, 1, 3))
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    angle = rng.uniform(0, np.pi, size=num_classes)
    freq = rng.uniform(1.0, 3.0, size=num_classes)
    phase = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy) * freq[
        :, None, None
    ]
    pattern = 35 * np.sin(2 * np.pi * phase)[..., None]  # (K, 32, 32, 1)
    return (colours + pattern).astype(np.float32)


def make_images(
    n: int, num_classes: int = 10, seed: int = 0, noise: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` learnable synthetic images.

    Args:
        n: number of images.
        num_classes: number of classes; labels are balanced (``n % num_classes`` extra ones go
            to the first classes) and shuffled.
        seed: seed for labels and noise.
        noise: standard deviation of the per-pixel Gaussian noise, in 0..255 units.

    Returns:
        (images uint8 (n, 32, 32, 3), labels int64 (n,)).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = _prototypes(num_classes)[labels] + rng.normal(0, noise, size=(n, 32, 32, 3))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def _grouped(n_per_class: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each class, grouped by label (the class-folder read order)."""
    images, labels = make_images(n_per_class * num_classes, num_classes, seed)
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def make_cifar_data(
    name: str = "cifar10",
    n_train_per_class: int = 20,
    n_test_per_class: int = 5,
    seed: int = 0,
    noise: float = 20.0,
) -> CifarData:
    """An in-memory synthetic dataset with CIFAR's names, shapes and dtypes (checksum set);
    ``noise``: per-pixel noise (see :func:`make_images`; higher is harder)."""
    names = CIFAR10_CLASSES if name == "cifar10" else CIFAR100_CLASSES
    tr_x, tr_y = make_images(n_train_per_class * len(names), len(names), seed, noise)
    te_x, te_y = make_images(n_test_per_class * len(names), len(names), seed + 1, noise)
    return CifarData(
        name=name,
        train_images=tr_x,
        train_labels=tr_y,
        test_images=te_x,
        test_labels=te_y,
        class_names=names,
        source="synthetic",
        checksum=compute_checksum(tr_x, tr_y, te_x, te_y),
    )


def _to_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC -> (N, 3072) uint8 rows, channel-major, as in CIFAR's batches."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_torchvision_cifar10(
    root: str | Path, n_train_per_class: int = 5, n_test_per_class: int = 2, seed: int = 0
) -> CifarData:
    """Write ``<root>/cifar-10-batches-py/`` in torchvision's format.

    Files: ``data_batch_1`` .. ``data_batch_5`` (training images spread over the five),
    ``test_batch`` (dicts with ``data`` (N, 3072) uint8 and ``labels`` list of int) and
    ``batches.meta`` (``label_names``).

    Returns:
        The dataset a correct reader must produce, ``source`` = the written folder.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = make_cifar_data("cifar10", n_train_per_class, n_test_per_class, seed)
    chunks = np.array_split(np.arange(len(data.train_labels)), 5)
    for i, idx in enumerate(chunks, start=1):
        _dump(
            {
                "batch_label": f"training batch {i} of 5",
                "labels": [int(v) for v in data.train_labels[idx]],
                "data": _to_rows(data.train_images[idx]),
                "filenames": [f"img_{j}.png" for j in idx],
            },
            folder / f"data_batch_{i}",
        )
    _dump(
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [int(v) for v in data.test_labels],
            "data": _to_rows(data.test_images),
            "filenames": [f"test_{j}.png" for j in range(len(data.test_labels))],
        },
        folder / "test_batch",
    )
    _dump(
        {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 10000, "num_vis": 3072},
        folder / "batches.meta",
    )
    return _with_source(data, folder)


def write_torchvision_cifar100(
    root: str | Path, n_train_per_class: int = 2, n_test_per_class: int = 1, seed: int = 0
) -> CifarData:
    """Write ``<root>/cifar-100-python/`` (``train``, ``test``, ``meta``) in torchvision's format.

    ``train``/``test`` hold ``data`` (N, 3072) uint8, ``fine_labels`` and ``coarse_labels``;
    ``meta`` holds ``fine_label_names`` and ``coarse_label_names``.

    Returns:
        The dataset a correct reader must produce, ``source`` = the written folder.
    """
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    data = make_cifar_data("cifar100", n_train_per_class, n_test_per_class, seed)
    for split in ("train", "test"):
        labels = getattr(data, f"{split}_labels")
        _dump(
            {
                "filenames": [f"{split}_{j}.png" for j in range(len(labels))],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": [int(v) for v in labels],
                "coarse_labels": [int(v) % 20 for v in labels],
                "data": _to_rows(getattr(data, f"{split}_images")),
            },
            folder / split,
        )
    _dump(
        {
            "fine_label_names": list(CIFAR100_CLASSES),
            "coarse_label_names": list(CIFAR100_COARSE_CLASSES),
        },
        folder / "meta",
    )
    return _with_source(data, folder)


def write_class_folders(
    root: str | Path,
    num_classes: int = 10,
    names: list[str] | tuple[str, ...] | None = None,
    n_train: int = 3,
    n_test: int = 2,
    fmt: str = "png",
    seed: int = 0,
) -> CifarData:
    """Write ``<root>/train/<class>/NNNN.<fmt>`` and ``<root>/test/<class>/NNNN.<fmt>``.

    Args:
        root: the dataset folder (created).
        num_classes: 10 or 100 (any count works for error tests).
        names: folder names in label order; default the canonical CIFAR names.
        n_train: images per class in train/.
        n_test: images per class in test/.
        fmt: ``"png"`` (lossless) or ``"jpg"``/``"jpeg"`` (quality 95, 4:4:4; ~4 levels off).
        seed: image seed.

    Returns:
        The dataset a correct reader must produce (grouped by label, files in name order;
        for JPEG the pixels are the pre-compression ones), ``source`` = ``root``.
    """
    root = Path(root)
    if names is None:
        names = CIFAR10_CLASSES if num_classes == 10 else CIFAR100_CLASSES[:num_classes]
    tr_x, tr_y = _grouped(n_train, num_classes, seed)
    te_x, te_y = _grouped(n_test, num_classes, seed + 1)
    for split, images, labels in (("train", tr_x, tr_y), ("test", te_x, te_y)):
        counter = [0] * num_classes
        for img, label in zip(images, labels, strict=True):
            d = root / split / names[label]
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"{counter[label]:04d}.{fmt}"
            counter[label] += 1
            if fmt == "png":
                Image.fromarray(img).save(path)
            else:
                Image.fromarray(img).save(path, format="JPEG", quality=95, subsampling=0)
    dataset_name = "cifar10" if num_classes == 10 else "cifar100"
    canon = CIFAR10_CLASSES if num_classes == 10 else CIFAR100_CLASSES
    return CifarData(
        name=dataset_name,
        train_images=tr_x,
        train_labels=tr_y,
        test_images=te_x,
        test_labels=te_y,
        class_names=tuple(canon[:num_classes]),
        source=str(root),
        checksum=compute_checksum(tr_x, tr_y, te_x, te_y),
    )


def make_archive(
    src_dir: str | Path, dest: str | Path, kind: str = "tar.gz", top: str | None = None
) -> Path:
    """Pack the contents of ``src_dir`` into an archive.

    Args:
        src_dir: folder whose contents (e.g. ``train/``, ``test/`` or ``cifar-10-batches-py/``)
            become the archive's top level.
        dest: archive path to write.
        kind: ``"tar"``, ``"tar.gz"`` (also ``"tgz"``) or ``"zip"``.
        top: if given, put everything under this top-level folder inside the archive.

    Returns:
        ``dest`` as a Path.
    """
    src, dest = Path(src_dir), Path(dest)
    files = sorted(p for p in src.rglob("*"))
    arc = {p: "/".join(filter(None, [top, p.relative_to(src).as_posix()])) for p in files}
    if kind == "zip":
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, arc[p])  # folders become "name/" entries
    elif kind in ("tar", "tar.gz", "tgz"):
        with tarfile.open(dest, "w" if kind == "tar" else "w:gz") as tf:
            for p in files:
                tf.add(p, arc[p], recursive=False)
    else:
        raise ValueError(f"unknown archive kind {kind!r}; expected tar, tar.gz, tgz or zip")
    return dest


def _with_source(data: CifarData, source: Path) -> CifarData:
    return CifarData(
        name=data.name,
        train_images=data.train_images,
        train_labels=data.train_labels,
        test_images=data.test_images,
        test_labels=data.test_labels,
        class_names=data.class_names,
        source=str(source),
        checksum=data.checksum,
    )
