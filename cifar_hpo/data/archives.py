"""Datasets inside ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives, read as a stream.

Members are read one by one, never extracted to disk: torchvision's pickles (e.g. the official
``cifar-10-python.tar.gz``) or one class-folder dataset, at the top or under one folder.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from cifar_hpo.data.class_folders import IMAGE_EXTS, assemble_class_folders, decode_image
from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.torchvision_files import TV_FILES, TV_FOLDERS, read_torchvision
from cifar_hpo.data.validate import SPLITS, is_hidden, one_line, short_list

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(path: Path) -> bool:
    """True if the file name ends in one of :data:`ARCHIVE_SUFFIXES`."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_archive(path: Path) -> Iterator[tuple[str, bytes | None]]:
    """Yield (member path, bytes) for files and (member path, None) for folders, in stream order.

    Raises:
        DatasetError: the file is not a readable tar/tar.gz/zip archive or is truncated.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    yield info.filename.rstrip("/"), (None if info.is_dir() else zf.read(info))
            return
        if not tarfile.is_tarfile(path):
            raise DatasetError(
                f"{path} is not a readable archive; expected a .tar, .tar.gz/.tgz or .zip file"
            )
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if member.isdir():
                    yield member.name.rstrip("/"), None
                elif member.isfile():
                    f = tf.extractfile(member)
                    yield member.name, (f.read() if f is not None else b"")
    except DatasetError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DatasetError(f"cannot read archive {path}: {one_line(e)}") from e


def read_archive(path: Path, name: str | None) -> CifarData:
    """Decode the torchvision files or the one class-folder dataset in archive ``path``.

    Args:
        path: a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` file.
        name: ``"cifar10"``, ``"cifar100"`` or None to infer it.

    Raises:
        DatasetError: an unreadable archive, both torchvision datasets without a name, several
            class-folder datasets, or no known layout (lists the top-level entries).
    """
    where = str(path)
    tv: dict[str, dict[str, bytes]] = {n: {} for n in TV_FOLDERS}
    images: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = defaultdict(list)
    folders: set[tuple[str, str]] = set()
    prefixes: set[tuple[str, ...]] = set()
    top: set[str] = set()
    for member, raw in iter_archive(path):
        parts = tuple(p for p in PurePosixPath(member).parts if p != "/")
        if not parts or is_hidden(parts):
            continue
        top.add(parts[0] + ("/" if raw is None or len(parts) > 1 else ""))
        if raw is None:
            if len(parts) >= 2 and parts[-2] in SPLITS:
                folders.add((parts[:-2], parts[-2], parts[-1]))
            continue
        if len(parts) >= 2:
            for n, folder in TV_FOLDERS.items():
                if parts[-2] == folder and parts[-1] in TV_FILES[n]:
                    tv[n][parts[-1]] = raw
        if len(parts) >= 3 and parts[-3] in SPLITS and parts[-1].lower().endswith(IMAGE_EXTS):
            prefix, split, folder, fname = parts[:-3], parts[-3], parts[-2], parts[-1]
            prefixes.add(prefix)
            if len(prefixes) > 1:
                shown = sorted("/".join(p) + "/" if p else "(top level)" for p in prefixes)
                raise DatasetError(
                    f"{where} holds several class-folder datasets (under {', '.join(shown)}); "
                    "expected one"
                )
            images[(split, folder)].append(
                (fname, decode_image(raw, f"{'/'.join(parts)} in {where}"))
            )
    present = [n for n in TV_FOLDERS if tv[n]]
    if name is None and len(present) == 1:
        name = present[0]
    if name is None and len(present) > 1:
        raise DatasetError(
            f"{where} holds both CIFAR-10 and CIFAR-100 torchvision files; pass the dataset name"
        )
    if name is not None and tv[name]:
        return read_torchvision(tv[name], name, f"{where}:{TV_FOLDERS[name]}")
    if not images:
        raise DatasetError(
            f"no dataset layout recognised in archive {where} "
            f"(top-level entries: {short_list(sorted(top)) or 'none'}); expected "
            "train/<class>/*.png|jpg and test/<class>/..., or a cifar-10-batches-py / "
            "cifar-100-python folder"
        )
    (prefix,) = prefixes
    empty = [(s, f) for (p, s, f) in folders if p == prefix]
    return assemble_class_folders(dict(images), name, where, empty)
