"""The decoded-dataset cache: ``<data_dir>/cache/<name>.npz``, written once, loaded in ~1 s.

The cache is an uncompressed ``.npz`` (no pickles) with the arrays ``train_images`` (N, 32, 32,
3) uint8, ``train_labels`` (N,) int64, ``test_images``, ``test_labels``, ``class_names`` (str),
and the 0-d strings ``name``, ``source``, ``checksum`` plus ``version``. CIFAR-10 takes
~185 MB. Loading trusts the stored checksum and only checks shapes, dtypes and label range.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar_hpo.data.classes import DATASET_NAMES, check_name
from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.sources import one_line, validate_data

CACHE_VERSION = 1
DATA_DIR_ENV = "CIFAR_HPO_DATA_DIR"
DEFAULT_DATA_DIR = "data"
_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "class_names")
_META = ("name", "source", "checksum", "version")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$CIFAR_HPO_DATA_DIR``, else ``./data``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def cache_path(data_dir: str | os.PathLike | None, name: str) -> Path:
    """``<data_dir>/cache/<name>.npz`` (``data_dir`` resolved by :func:`resolve_data_dir`)."""
    return resolve_data_dir(data_dir) / "cache" / f"{check_name(name)}.npz"


def compute_checksum(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> str:
    """sha256 hex digest over the raw bytes of the four arrays, in this order.

    Images are hashed as C-contiguous uint8, labels as little-endian int64, so the digest
    identifies the pixels and labels regardless of where they were read from.
    """
    h = hashlib.sha256()
    for arr, dtype in (
        (train_images, np.uint8),
        (train_labels, "<i8"),
        (test_images, np.uint8),
        (test_labels, "<i8"),
    ):
        h.update(np.ascontiguousarray(arr, dtype=dtype).data)
    return h.hexdigest()


def with_checksum(data: CifarData) -> CifarData:
    """A copy of ``data`` with ``checksum`` filled in from its arrays."""
    digest = compute_checksum(
        data.train_images, data.train_labels, data.test_images, data.test_labels
    )
    return CifarData(
        name=data.name,
        train_images=data.train_images,
        train_labels=data.train_labels,
        test_images=data.test_images,
        test_labels=data.test_labels,
        class_names=tuple(data.class_names),
        source=data.source,
        checksum=digest,
        extra=dict(data.extra),
    )


def save_cache(data: CifarData, path: str | os.PathLike) -> Path:
    """Validate ``data`` and write it atomically (temporary file, then ``os.replace``).

    Args:
        data: the dataset; its checksum is computed here if empty.
        path: the ``.npz`` file to (over)write; parent folders are created.

    Returns:
        The path written.

    Raises:
        DatasetError: the data is invalid, or the file cannot be written.
    """
    path = Path(path)
    validate_data(data, data.source)
    if not data.checksum:
        data = with_checksum(data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(
                f,
                train_images=data.train_images,
                train_labels=data.train_labels,
                test_images=data.test_images,
                test_labels=data.test_labels,
                class_names=np.array(data.class_names, dtype=str),
                name=np.array(data.name),
                source=np.array(data.source),
                checksum=np.array(data.checksum),
                version=np.array(CACHE_VERSION),
            )
        os.replace(tmp, path)
    except OSError as e:
        raise DatasetError(f"cannot write cache {path}: {one_line(e)}") from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def _open(path: Path) -> np.lib.npyio.NpzFile:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DatasetError(
            f"cannot read cache {path} ({one_line(e)}); delete it and re-import the dataset"
        ) from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DatasetError(f"cache {path} is not an .npz archive; delete it and re-import")
    missing = [k for k in _KEYS + _META if k not in z.files]
    if missing:
        z.close()
        raise DatasetError(
            f"cache {path} lacks {', '.join(missing)}; delete it and re-import the dataset"
        )
    return z


def load_cache(path: str | os.PathLike, name: str | None = None) -> CifarData:
    """Load a cache written by :func:`save_cache`.

    Args:
        path: the ``.npz`` file.
        name: if given, the dataset name the cache must hold.

    Returns:
        The dataset with ``source`` and ``checksum`` as stored and
        ``extra["cache_path"]`` = ``path``.

    Raises:
        DatasetError: the file is missing, unreadable, of another version or dataset, or its
            arrays have the wrong shapes, dtypes or labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no dataset cache at {path}")
    z = _open(path)
    try:
        with z:
            arrays = {k: z[k] for k in _KEYS}
            meta = {k: z[k].item() for k in _META}
    except Exception as e:
        raise DatasetError(
            f"cannot read cache {path} ({one_line(e)}); delete it and re-import the dataset"
        ) from e
    if meta["version"] != CACHE_VERSION:
        raise DatasetError(
            f"cache {path} has version {meta['version']}; expected {CACHE_VERSION} "
            "(delete it and re-import the dataset)"
        )
    if name is not None and meta["name"] != name:
        raise DatasetError(f"cache {path} holds {meta['name']!r}; expected {name!r}")
    data = CifarData(
        name=str(meta["name"]),
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        class_names=tuple(str(c) for c in arrays["class_names"]),
        source=str(meta["source"]),
        checksum=str(meta["checksum"]),
        extra={"cache_path": str(path)},
    )
    validate_data(data, f"cache {path}")
    return data


@dataclass(frozen=True)
class DatasetInfo:
    """What ``cifar-hpo data info`` shows about one cached dataset.

    Attributes:
        name: ``"cifar10"`` or ``"cifar100"``.
        source: the path the cache was decoded from.
        cache_path: the ``.npz`` file.
        cache_bytes: its size in bytes.
        checksum: sha256 hex digest of images and labels.
        class_names: names in label order.
        train_counts: images per class in the training split, in label order.
        test_counts: images per class in the test split.
    """

    name: str
    source: str
    cache_path: str
    cache_bytes: int
    checksum: str
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]

    @property
    def num_train(self) -> int:
        """Total training images."""
        return sum(self.train_counts)

    @property
    def num_test(self) -> int:
        """Total test images."""
        return sum(self.test_counts)

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready), with ``num_train``/``num_test`` and per-class counts."""
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["train_counts"] = dict(zip(self.class_names, self.train_counts, strict=True))
        d["test_counts"] = dict(zip(self.class_names, self.test_counts, strict=True))
        d["num_train"], d["num_test"] = self.num_train, self.num_test
        return d


def dataset_info(data_dir: str | os.PathLike | None = None, name: str = "cifar10") -> DatasetInfo:
    """Summarise the cache of ``name`` without loading its images.

    Args:
        data_dir: the data directory (default ``$CIFAR_HPO_DATA_DIR`` or ``./data``).
        name: ``"cifar10"`` or ``"cifar100"``.

    Raises:
        DatasetError: unknown name, no cache (the message says how to make one), or an
            unreadable cache.
    """
    path = cache_path(data_dir, name)
    if not path.is_file():
        raise DatasetError(
            f"no {name} cache at {path}; create it with: cifar-hpo data import PATH "
            f"(or load {name} once with download enabled)"
        )
    z = _open(path)
    with z:
        names = tuple(str(c) for c in z["class_names"])
        k = len(names)
        train = np.bincount(z["train_labels"], minlength=k)
        test = np.bincount(z["test_labels"], minlength=k)
        return DatasetInfo(
            name=str(z["name"].item()),
            source=str(z["source"].item()),
            cache_path=str(path),
            cache_bytes=path.stat().st_size,
            checksum=str(z["checksum"].item()),
            class_names=names,
            train_counts=tuple(int(c) for c in train),
            test_counts=tuple(int(c) for c in test),
        )


def cached_datasets(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets that have a cache in ``data_dir``, in :data:`DATASET_NAMES` order."""
    return [n for n in DATASET_NAMES if cache_path(data_dir, n).is_file()]
