"""Class-folder datasets: ``train/<class>/*.png|jpg|jpeg`` and ``test/<class>/...``.

Folders are named after the CIFAR classes in any order (``airplane``, ``plane``,
``aquarium fish`` ...) or numbered ``<label>_<name>`` (``0_plane``, ``1_car``). This module maps
folder names to labels, decodes images and stacks them; :mod:`cifar_hpo.data.archives` feeds it
archive members, :func:`read_class_dir` a directory.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_hpo.data.classes import CLASS_ALIASES, CLASSES, name_for_class_count
from cifar_hpo.data.dataset import CifarData, DatasetError
from cifar_hpo.data.validate import SPLITS, is_hidden, one_line, read_file, short_list

IMAGE_EXTS = (".png", ".jpg", ".jpeg")

_NUMBERED = re.compile(r"(\d+)[_\- ](.+)")


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
        name = name_for_class_count(len(folders), f"{where} (class folders {short_list(folders)})")
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
            f"{label} [{short_list(items)}]"
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
            f"[{short_list(only_train)}], only in test [{short_list(only_test)}]"
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


def class_root(path: Path) -> Path | None:
    """``path`` or its single sub-folder if that holds ``train/`` and ``test/``."""
    if any((path / s).is_dir() for s in SPLITS):
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir() and not is_hidden([p.name])]
    if len(subdirs) == 1 and any((subdirs[0] / s).is_dir() for s in SPLITS):
        return subdirs[0]
    return None


def read_class_dir(root: Path, name: str | None, where: str) -> CifarData:
    """Decode the class-folder dataset whose ``train/`` and ``test/`` are in ``root``.

    Hidden files and folders are skipped; ``where`` names the dataset in messages.
    """
    images: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
    empty = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(split_dir.iterdir()):
            if not class_dir.is_dir() or is_hidden([class_dir.name]):
                continue
            files = sorted(
                f
                for f in class_dir.iterdir()
                if f.suffix.lower() in IMAGE_EXTS and not is_hidden([f.name]) and f.is_file()
            )
            if not files:
                empty.append((split, class_dir.name))
                continue
            images[(split, class_dir.name)] = [
                (
                    f.name,
                    decode_image(read_file(f), f"{split}/{class_dir.name}/{f.name} in {where}"),
                )
                for f in files
            ]
    return assemble_class_folders(images, name, where, empty)
