"""torchvision's CIFAR pickles: ``cifar-10-batches-py/`` and ``cifar-100-python/``.

CIFAR-10 is five ``data_batch_*`` files, ``test_batch`` and ``batches.meta``; CIFAR-100 is
``train``, ``test`` and ``meta`` (fine labels are read). The readers take the files' bytes, so a
folder and an archive member go through the same code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.validate import one_line

# torchvision's folder names and the files each holds.
TV_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
TV_FILES = {
    "cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    "cifar100": ("train", "test", "meta"),
}
# Archives torchvision downloads (and leaves next to the extracted folder).
TV_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def _unpickle(raw: bytes, label: str) -> dict:
    """Load one torchvision batch file (a pickled dict written by Python 2) with str keys."""
    try:
        obj = pickle.loads(raw, encoding="latin1")  # noqa: S301 - the standard CIFAR format
    except Exception as e:
        raise DatasetError(f"cannot unpickle {label}: {one_line(e)}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{label} holds a {type(obj).__name__}; expected a pickled dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _tv_batch(raw: bytes, label: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 from one pickled batch."""
    d = _unpickle(raw, label)
    if "data" not in d or label_key not in d:
        raise DatasetError(
            f"{label} has keys {sorted(d)}; expected 'data' and {label_key!r} "
            "(torchvision CIFAR batch format)"
        )
    flat = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3072:
        raise DatasetError(f"{label} data is {flat.dtype} {flat.shape}; expected uint8 (N, 3072)")
    if len(labels) != len(flat):
        raise DatasetError(f"{label} has {len(flat)} images but {len(labels)} labels")
    # Rows are channel-major (R plane, G plane, B plane), each plane row-major 32x32.
    images = np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def _tv_names(raw: bytes, label: str, key: str) -> tuple[str, ...]:
    d = _unpickle(raw, label)
    if key not in d:
        raise DatasetError(f"{label} has keys {sorted(d)}; expected {key!r}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in d[key])


def read_torchvision(files: dict[str, bytes], name: str, where: str) -> CifarData:
    """Build a dataset from the raw bytes of torchvision's CIFAR files.

    Args:
        files: file name (e.g. ``"data_batch_1"``, ``"meta"``) -> file contents.
        name: ``"cifar10"`` or ``"cifar100"`` (fixes which files and keys are read).
        where: the folder or archive they came from, for messages.

    Raises:
        DatasetError: a file is missing, not a pickle, or has the wrong keys or shapes.
    """
    missing = [f for f in TV_FILES[name] if f not in files]
    if missing:
        raise DatasetError(f"{where} lacks {', '.join(missing)} ({name} torchvision format)")
    if name == "cifar10":
        parts = [_tv_batch(files[f], f"{where}/{f}", "labels") for f in TV_FILES[name][:5]]
        train_images = np.concatenate([p[0] for p in parts])
        train_labels = np.concatenate([p[1] for p in parts])
        test_images, test_labels = _tv_batch(files["test_batch"], f"{where}/test_batch", "labels")
        names = _tv_names(files["batches.meta"], f"{where}/batches.meta", "label_names")
    else:
        train_images, train_labels = _tv_batch(files["train"], f"{where}/train", "fine_labels")
        test_images, test_labels = _tv_batch(files["test"], f"{where}/test", "fine_labels")
        names = _tv_names(files["meta"], f"{where}/meta", "fine_label_names")
    return CifarData(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=names,
        source=where,
    )


def tv_in_dir(path: Path) -> dict[str, Path]:
    """Torchvision folders at or directly inside ``path``: dataset name -> folder."""
    if path.name == TV_FOLDERS["cifar10"] or (path / "data_batch_1").is_file():
        return {"cifar10": path}
    if path.name == TV_FOLDERS["cifar100"] or (
        (path / "meta").is_file() and (path / "train").is_file()
    ):
        return {"cifar100": path}
    return {n: path / f for n, f in TV_FOLDERS.items() if (path / f).is_dir()}
