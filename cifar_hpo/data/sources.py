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
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from cifar_hpo.data.classes import CLASS_ALIASES, CLASSES, check_name, name_for_class_count
from cifar_hpo.data.dataset import CifarData, DatasetError

SPLITS = ("train", "test")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
IMAGE_SHAPE = (32, 32, 3)

# torchvision's folder names and the files each holds.
TV_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
TV_FILES = {
    "cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    "cifar100": ("train", "test", "meta"),
}
# Archives torchvision downloads (and leaves next to the extracted folder).
TV_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}

_NUMBERED = re.compile(r"(\d+)[_\- ](.+)")


# --------------------------------------------------------------------------- helpers


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """Squash an exception (or text) into one short line for an error message."""
    text = str(exc) if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_list(items: Iterable[str], limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _is_hidden(parts: Iterable[str]) -> bool:
    """True for macOS/IDE debris: dot files, ``._foo`` resource forks, ``__MACOSX/``."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def is_archive(path: Path) -> bool:
    """True if the file name ends in one of :data:`ARCHIVE_SUFFIXES`."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def decode_image(data: bytes, label: str) -> np.ndarray:
    """Decode one PNG/JPEG image.

    Args:
        data: the encoded file.
        label: how to name the image in errors, e.g. ``"train/cat/0007.jpg in x.tar.gz"``.

    Returns:
        uint8 array, shape (32, 32, 3), RGB (grey, palette and RGBA images are converted).

    Raises:
        DatasetError: the bytes are not a decodable image, or the image is not 32x32.
    """
    try:
        # Naming the formats skips Pillow's probing of every plugin (~15% faster).
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as im:
            if im.size != (32, 32):
                w, h = im.size
                raise DatasetError(f"image {label} is {w}x{h} pixels; expected 32x32 (CIFAR size)")
            arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError ...)
        raise DatasetError(f"cannot decode image {label}: {one_line(e)}") from e
    return arr


def validate_data(data: CifarData, where: str) -> None:
    """Check that a dataset has CIFAR's shapes, dtypes and label ranges.

    Args:
        data: the dataset to check.
        where: the source, for error messages.

    Raises:
        DatasetError: an unknown name; images not uint8 (N, 32, 32, 3); labels not int64 (N,);
            a label outside [0, num_classes); a class count that does not fit the name; a split
            that is empty or lacks a class.
    """
    check_name(data.name)
    expected = len(CLASSES[data.name])
    if data.num_classes != expected:
        raise DatasetError(
            f"{where} has {data.num_classes} class names; {data.name} has {expected}"
        )
    for split in SPLITS:
        images = getattr(data, f"{split}_images")
        labels = getattr(data, f"{split}_labels")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
            raise DatasetError(
                f"{split} images of {where} are {images.dtype} {images.shape}; "
                "expected uint8 (N, 32, 32, 3)"
            )
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise DatasetError(
                f"{split} labels of {where} are {labels.dtype} {labels.shape}; "
                f"expected int64 ({len(images)},)"
            )
        if len(labels) == 0:
            raise DatasetError(f"{split} split of {where} is empty")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= expected:
            raise DatasetError(
                f"{split} labels of {where} span [{lo}, {hi}]; expected [0, {expected - 1}]"
            )
        counts = np.bincount(labels, minlength=expected)
        if (counts == 0).any():
            absent = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
            raise DatasetError(
                f"{split} split of {where} has no images of class(es) {_short_list(absent)}; "
                "train and test must hold the same classes"
            )


# --------------------------------------------------------------------------- entry point


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
        data = _read_archive(path, name)
    validate_data(data, str(path))
    return data


# --------------------------------------------------------------------------- torchvision pickles


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


def _tv_in_dir(path: Path) -> dict[str, Path]:
    """Torchvision folders at or directly inside ``path``: dataset name -> folder."""
    if path.name == TV_FOLDERS["cifar10"] or (path / "data_batch_1").is_file():
        return {"cifar10": path}
    if path.name == TV_FOLDERS["cifar100"] or (
        (path / "meta").is_file() and (path / "train").is_file()
    ):
        return {"cifar100": path}
    return {n: path / f for n, f in TV_FOLDERS.items() if (path / f).is_dir()}


# --------------------------------------------------------------------------- class folders


def _norm_class(folder: str) -> str:
    """``"Aquarium Fish"`` -> ``"aquarium_fish"``; ``"plane"`` -> ``"airplane"``."""
    key = re.sub(r"[\s\-]+", "_", folder.strip().lower())
    return CLASS_ALIASES.get(key, key)


def class_folder_labels(
    folders: Iterable[str], name: str | None, where: str
) -> tuple[str, dict[str, int]]:
    """Map class-folder names to CIFAR labels.

    Folders named after the classes (any order, case, ``_``/``-``/space, ``plane``/``car``
    aliases) get the canonical label of their class. If every folder is numbered
    ``<label>_<name>`` with labels exactly 0..K-1 (``0_plane``, ``1_car`` ...), the numbers are
    the labels and the canonical names are used.

    Args:
        folders: the class folder names of one split.
        name: ``"cifar10"``, ``"cifar100"`` or None to infer from the number of folders.
        where: the dataset location, for messages.

    Returns:
        (dataset name, folder -> label).

    Raises:
        DatasetError: the folders are not the dataset's classes (lists unexpected and missing
            ones), two folders name the same class, or a numbered folder contradicts its name.
    """
    folders = sorted(folders)
    if name is None:
        name = name_for_class_count(len(folders), f"{where} (class folders {_short_list(folders)})")
    canon = CLASSES[name]
    numbered = [_NUMBERED.fullmatch(f) for f in folders]
    if all(numbered) and sorted(int(m[1]) for m in numbered) == list(range(len(canon))):
        mapping = {}
        for folder, m in zip(folders, numbered, strict=True):
            label, base = int(m[1]), _norm_class(m[2])
            if base in canon and canon.index(base) != label:
                raise DatasetError(
                    f"class folder {folder!r} in {where} is numbered {label} but {name} "
                    f"labels {base!r} as {canon.index(base)}"
                )
            mapping[folder] = label
        return name, mapping
    index = {c: i for i, c in enumerate(canon)}
    mapping, unexpected = {}, []
    for folder in folders:
        base = _norm_class(folder)
        m = _NUMBERED.fullmatch(folder)
        if base not in index and m:  # "3_cat" mixed with un-numbered folders
            base = _norm_class(m[2])
        if base in index:
            mapping[folder] = index[base]
        else:
            unexpected.append(folder)
    missing = sorted(set(canon) - {canon[i] for i in mapping.values()})
    if unexpected or missing:
        problems = [
            f"{label} [{_short_list(items)}]"
            for label, items in (("unexpected", unexpected), ("missing", missing))
            if items
        ]
        raise DatasetError(f"class folders in {where} do not match {name}: {', '.join(problems)}")
    if len(set(mapping.values())) != len(mapping):
        by_label = defaultdict(list)
        for folder, label in mapping.items():
            by_label[label].append(folder)
        dup = next(v for v in by_label.values() if len(v) > 1)
        raise DatasetError(f"class folders {dup} in {where} name the same {name} class")
    return name, mapping


def assemble_class_folders(
    images: dict[tuple[str, str], list[tuple[str, np.ndarray]]],
    name: str | None,
    where: str,
    empty: Iterable[tuple[str, str]] = (),
) -> CifarData:
    """Stack decoded class-folder images into a dataset.

    Args:
        images: (split, class folder) -> [(file name, image (32, 32, 3) uint8), ...].
        name: ``"cifar10"``, ``"cifar100"`` or None to infer from the class count.
        where: the dataset location, for messages.
        empty: (split, class folder) pairs known to exist but hold no image.

    Returns:
        The dataset; within a split images are grouped by label, then sorted by file name.

    Raises:
        DatasetError: an empty class folder, a split missing, train and test with different
            class folders, or folders that are not the dataset's classes.
    """
    for split, folder in sorted(empty):
        if (split, folder) not in images:
            raise DatasetError(
                f"class folder {split}/{folder} in {where} has no .png/.jpg/.jpeg images"
            )
    folders = {s: {f for (sp, f) in images if sp == s} for s in SPLITS}
    absent = [s for s in SPLITS if not folders[s]]
    if absent:
        present = [f"{s}/" for s in SPLITS if folders[s]]
        raise DatasetError(
            f"{where} has no images under {' or '.join(f'{s}/' for s in absent)} "
            f"(found images under: {', '.join(present) or 'neither'}); "
            "expected train/<class>/*.png|jpg and test/<class>/..."
        )
    if folders["train"] != folders["test"]:
        only_train = sorted(folders["train"] - folders["test"])
        only_test = sorted(folders["test"] - folders["train"])
        raise DatasetError(
            f"train/ and test/ in {where} have different class folders: only in train "
            f"[{_short_list(only_train)}], only in test [{_short_list(only_test)}]"
        )
    name, mapping = class_folder_labels(folders["train"], name, where)
    order = sorted(mapping, key=mapping.__getitem__)
    arrays = {}
    for split in SPLITS:
        imgs, labels = [], []
        for folder in order:
            files = sorted(images[(split, folder)], key=lambda item: item[0])
            imgs.extend(img for _, img in files)
            labels.extend([mapping[folder]] * len(files))
        arrays[f"{split}_images"] = np.stack(imgs)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    return CifarData(name=name, class_names=CLASSES[name], source=where, **arrays)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {one_line(e)}") from e


def _class_root(path: Path) -> Path | None:
    """``path`` or its single sub-folder if that holds ``train/`` and ``test/``."""
    if any((path / s).is_dir() for s in SPLITS):
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir() and not _is_hidden([p.name])]
    if len(subdirs) == 1 and any((subdirs[0] / s).is_dir() for s in SPLITS):
        return subdirs[0]
    return None


def _read_class_dir(root: Path, name: str | None, where: str) -> CifarData:
    images: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
    empty = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(split_dir.iterdir()):
            if not class_dir.is_dir() or _is_hidden([class_dir.name]):
                continue
            files = sorted(
                f
                for f in class_dir.iterdir()
                if f.suffix.lower() in IMAGE_EXTS and not _is_hidden([f.name]) and f.is_file()
            )
            if not files:
                empty.append((split, class_dir.name))
                continue
            images[(split, class_dir.name)] = [
                (
                    f.name,
                    decode_image(_read_file(f), f"{split}/{class_dir.name}/{f.name} in {where}"),
                )
                for f in files
            ]
    return assemble_class_folders(images, name, where, empty)


def _read_dir(path: Path, name: str | None) -> CifarData:
    where = str(path)
    tv = _tv_in_dir(path)
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
        files = {f: _read_file(folder / f) for f in TV_FILES[name] if (folder / f).is_file()}
        return read_torchvision(files, name, str(folder))
    root = _class_root(path)
    if root is None and tv:
        if list(tv.values()) == [path]:
            raise DatasetError(f"{where} is a {next(iter(tv))} torchvision folder, not {name}")
        other = ", ".join(f"{TV_FOLDERS[n]} ({n})" for n in tv)
        raise DatasetError(f"{where} holds {other} but not {TV_FOLDERS[name]} ({name})")
    if root is None:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        raise DatasetError(
            f"no dataset layout recognised in {where} (found: {_short_list(found) or 'nothing'}); "
            "expected train/<class>/*.png|jpg and test/<class>/..., "
            "or a cifar-10-batches-py / cifar-100-python folder"
        )
    return _read_class_dir(root, name, str(root))


# --------------------------------------------------------------------------- archives


def _iter_archive(path: Path) -> Iterator[tuple[str, bytes | None]]:
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


def _read_archive(path: Path, name: str | None) -> CifarData:
    where = str(path)
    tv: dict[str, dict[str, bytes]] = {n: {} for n in TV_FOLDERS}
    images: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = defaultdict(list)
    folders: set[tuple[str, str]] = set()
    prefixes: set[tuple[str, ...]] = set()
    top: set[str] = set()
    for member, raw in _iter_archive(path):
        parts = tuple(p for p in PurePosixPath(member).parts if p != "/")
        if not parts or _is_hidden(parts):
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
            f"(top-level entries: {_short_list(sorted(top)) or 'none'}); expected "
            "train/<class>/*.png|jpg and test/<class>/..., or a cifar-10-batches-py / "
            "cifar-100-python folder"
        )
    (prefix,) = prefixes
    empty = [(s, f) for (p, s, f) in folders if p == prefix]
    return assemble_class_folders(dict(images), name, where, empty)


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
    "TV_FILES",
    "TV_FOLDERS",
    "assemble_class_folders",
    "class_folder_labels",
    "decode_image",
    "find_source",
    "read_source",
    "read_torchvision",
    "validate_data",
]
