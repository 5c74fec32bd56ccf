"""Readers for the on-disk CIFAR formats: torchvision pickles and class folders (dir or archive).

Every reader returns a :class:`CifarData` whose ``checksum`` is still empty; :func:`read_source`
validates the arrays (:func:`validate_data`) before returning them. Archives are read as a
stream, member by member, without extracting anything to disk.

Supported layouts (``X`` is the path handed to :func:`read_source`):

* torchvision's CIFAR-10 folder ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``) or CIFAR-100 folder ``cifar-100-python/`` (``train``,
  ``test``, ``meta``; fine labels), as ``X`` itself, inside ``X``, or inside an archive
  (e.g. the official ``cifar-10-python.tar.gz``).
* class folders ``train/<class>/*.png|jpg|jpeg`` and ``test/<class>/...``, at the top of ``X`` or
  under one top-level folder, as a directory or inside a ``.tar``, ``.tar.gz``/``.tgz`` or
  ``.zip`` archive. Class folders are named after the CIFAR classes in any order (``airplane``,
  ``plane``, ``aquarium fish`` ...) or numbered ``<label>_<name>`` (``0_plane``, ``1_car``).

Each format lives in its own module (:mod:`~cifar_hpo.data.torchvision_files`,
:mod:`~cifar_hpo.data.class_folders`, :mod:`~cifar_hpo.data.archives`, the shared checks in
:mod:`~cifar_hpo.data.validate`); this module picks one for a path and re-exports their names.
"""

from __future__ import annotations

from pathlib import Path

from cifar_hpo.data.archives import ARCHIVE_SUFFIXES, is_archive, read_archive
from cifar_hpo.data.class_folders import (
    IMAGE_EXTS,
    assemble_class_folders,
    class_folder_labels,
    class_root,
    decode_image,
    read_class_dir,
)
from cifar_hpo.data.classes import check_name
from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.torchvision_files import (
    TV_ARCHIVES,
    TV_FILES,
    TV_FOLDERS,
    read_torchvision,
    tv_in_dir,
)
from cifar_hpo.data.validate import (
    IMAGE_SHAPE,
    SPLITS,
    one_line,
    read_file,
    short_list,
    validate_data,
)


def read_source(path: str | Path, name: str | None = None) -> CifarData:
    """Decode a dataset from a torchvision folder, a class-folder directory or an archive.

    Args:
        path: a ``cifar-10-batches-py``/``cifar-100-python`` folder or its parent, a class-folder
            directory, or a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` archive of either.
        name: ``"cifar10"`` or ``"cifar100"``; None infers it from the number of classes.

    Returns:
        The validated dataset, ``source`` = the resolved path, ``checksum`` still empty.

    Raises:
        DatasetError: the path is missing, of no known layout, an unreadable archive, or holds
            an undecodable or non-32x32 image, wrong class folders, or inconsistent splits.
            The message names the offending path.
    """
    path = Path(path).expanduser()
    if name is not None:
        check_name(name)
    if not path.exists():
        raise DatasetError(
            f"{path} does not exist; expected a cifar-10-batches-py or cifar-100-python folder, "
            "a class-folder directory (train/<class>/*.png) or a .tar/.tar.gz/.tgz/.zip archive"
        )
    path = path.resolve()
    if path.is_dir():
        data = _read_dir(path, name)
    else:
        data = read_archive(path, name)
    validate_data(data, str(path))
    return data


def _read_dir(path: Path, name: str | None) -> CifarData:
    where = str(path)
    tv = tv_in_dir(path)
    if name is not None and name in tv:
        folder = tv[name]
    elif name is None and len(tv) == 1:
        name, folder = next(iter(tv.items()))
    elif name is None and len(tv) > 1:
        raise DatasetError(
            f"{where} holds both cifar-10-batches-py and cifar-100-python; "
            "pass the dataset name (cifar10 or cifar100)"
        )
    else:
        folder = None
    if folder is not None:
        files = {f: read_file(folder / f) for f in TV_FILES[name] if (folder / f).is_file()}
        return read_torchvision(files, name, str(folder))
    root = class_root(path)
    if root is None and tv:
        if list(tv.values()) == [path]:
            raise DatasetError(f"{where} is a {next(iter(tv))} torchvision folder, not {name}")
        other = ", ".join(f"{TV_FOLDERS[n]} ({n})" for n in tv)
        raise DatasetError(f"{where} holds {other} but not {TV_FOLDERS[name]} ({name})")
    if root is None:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        raise DatasetError(
            f"no dataset layout recognised in {where} (found: {short_list(found) or 'nothing'}); "
            "expected train/<class>/*.png|jpg and test/<class>/..., "
            "or a cifar-10-batches-py / cifar-100-python folder"
        )
    return read_class_dir(root, name, str(root))


def find_source(data_dir: Path, name: str) -> Path | None:
    """The first local copy of ``name`` in ``data_dir``, in lookup order, or None.

    Order: torchvision folder (``cifar-10-batches-py/``, ``cifar-100-python/``); class-folder
    directory ``<name>/``; archives ``<name>*.tar|.tar.gz|.tgz|.zip`` (sorted by file name;
    ``cifar10*`` never matches ``cifar100*``) and torchvision's own ``cifar-10-python.tar.gz``.
    """
    check_name(name)
    candidates = [data_dir / TV_FOLDERS[name], data_dir / name]
    for p in candidates:
        if p.is_dir():
            return p
    if not data_dir.is_dir():
        return None
    archives = sorted(
        p
        for p in data_dir.iterdir()
        if p.is_file()
        and is_archive(p)
        and (
            p.name == TV_ARCHIVES[name]
            or (p.name.startswith(name) and not p.name[len(name) : len(name) + 1].isdigit())
        )
    )
    return archives[0] if archives else None


__all__ = [
    "ARCHIVE_SUFFIXES",
    "IMAGE_EXTS",
    "IMAGE_SHAPE",
    "SPLITS",
    "TV_ARCHIVES",
    "TV_FILES",
    "TV_FOLDERS",
    "assemble_class_folders",
    "class_folder_labels",
    "decode_image",
    "find_source",
    "is_archive",
    "one_line",
    "read_source",
    "read_torchvision",
    "validate_data",
]
