"""Get a CIFAR dataset into memory: from the cache, a local copy, or torchvision's download."""

from __future__ import annotations

import os
from pathlib import Path

from cifar_hpo.data.cache import (
    cache_path,
    load_cache,
    resolve_data_dir,
    save_cache,
    with_checksum,
)
from cifar_hpo.data.classes import check_name
from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.sources import TV_FOLDERS, find_source, one_line, read_source

IMPORT_HINT = "import a copy with: cifar-hpo data import PATH"


def _build_cache(data: CifarData, data_dir: Path) -> CifarData:
    """Checksum ``data``, write ``<data_dir>/cache/<name>.npz`` and return the final dataset."""
    data = with_checksum(data)
    path = save_cache(data, cache_path(data_dir, data.name))
    data.extra["cache_path"] = str(path)
    return data


def download_torchvision(name: str, data_dir: Path) -> Path:
    """Download ``name`` with torchvision into ``data_dir`` and return the extracted folder.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        data_dir: torchvision's ``root``; the archive and e.g. ``cifar-10-batches-py/`` land here.

    Raises:
        DatasetError: torchvision is missing or the download fails (e.g. no internet).
    """
    try:
        from torchvision import datasets  # heavy import, only needed here

        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        data_dir.mkdir(parents=True, exist_ok=True)
        cls(root=str(data_dir), train=True, download=True)
    except Exception as e:
        raise DatasetError(
            f"{name} not found in {data_dir}/ and download failed ({one_line(e)}); {IMPORT_HINT}"
        ) from e
    folder = data_dir / TV_FOLDERS[name]
    if not folder.is_dir():
        raise DatasetError(
            f"{name} download into {data_dir}/ did not create {folder.name}/; {IMPORT_HINT}"
        )
    return folder


def load_dataset(
    name: str = "cifar10",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> CifarData:
    """Load CIFAR-10 or CIFAR-100 into memory, decoding and caching it on first use.

    Lookup order in ``data_dir``:

    0. the cache ``cache/<name>.npz`` (returned as is: about a second for CIFAR-10);
    1. torchvision's folder ``cifar-10-batches-py/`` or ``cifar-100-python/``;
    2. a class-folder directory ``<name>/`` or an archive ``<name>*.tar|.tar.gz|.tgz|.zip``
       (or torchvision's ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``);
    3. ``torchvision.datasets.CIFAR10/100(root=data_dir, download=True)`` if ``download``.

    A source found in steps 1-3 is decoded, verified and written to the cache.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        data_dir: the data directory; default ``$CIFAR_HPO_DATA_DIR``, else ``./data``.
        download: allow step 3.

    Returns:
        The dataset: images (N, 32, 32, 3) uint8 HWC RGB, labels (N,) int64, class names,
        ``source`` (the original path), ``checksum`` (sha256 hex), ``extra["cache_path"]``.

    Raises:
        DatasetError: unknown name; nothing found and download off or failing (the message
            says how to import a copy); a broken cache or source (names the path).
    """
    check_name(name)
    root = resolve_data_dir(data_dir)
    cached = cache_path(root, name)
    if cached.is_file():
        return load_cache(cached, name)
    source = find_source(root, name)
    if source is None:
        if not download:
            raise DatasetError(
                f"{name} not found in {root}/ (looked for cache/{name}.npz, {TV_FOLDERS[name]}/, "
                f"{name}/, {name}*.tar|.tar.gz|.tgz|.zip) and download is off; {IMPORT_HINT}"
            )
        source = download_torchvision(name, root)
    return _build_cache(read_source(source, name), root)


def import_dataset(
    path: str | os.PathLike,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
) -> CifarData:
    """Decode a local copy of CIFAR-10/100 and (over)write the cache in ``data_dir``.

    Args:
        path: a torchvision folder (``cifar-10-batches-py``, ``cifar-100-python``, or a folder
            holding one), a class-folder directory (``train/<class>/*.png|jpg|jpeg`` and
            ``test/<class>/...``, optionally under one top-level folder), or a ``.tar``,
            ``.tar.gz``/``.tgz`` or ``.zip`` archive of either (read as a stream, not extracted).
        name: ``"cifar10"`` or ``"cifar100"``; None infers it from the class count (10 or 100).
        data_dir: where ``cache/<name>.npz`` goes; default ``$CIFAR_HPO_DATA_DIR``, else
            ``./data``.

    Returns:
        The dataset, ``source`` = resolved ``path``, checksum set, ``extra["cache_path"]``.

    Raises:
        DatasetError: missing path, unknown layout, unreadable archive, undecodable or
            non-32x32 image, wrong or empty class folders, train/test mismatch, or a class
            count that does not fit ``name``. The message names the offending path.
    """
    data = read_source(path, name)
    return _build_cache(data, resolve_data_dir(data_dir))
