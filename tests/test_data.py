"""Tests for cifar_hpo.data: formats, cache, checksum, splits and every error path."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import (  # noqa: E402
    make_archive,
    make_cifar_data,
    make_images,
    write_class_folders,
    write_torchvision_cifar10,
    write_torchvision_cifar100,
)

from cifar_hpo.data import (  # noqa: E402
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CifarData,
    DatasetError,
    cache_path,
    cached_datasets,
    compute_checksum,
    dataset_info,
    import_dataset,
    load_cache,
    load_dataset,
    save_cache,
    stratified_split,
    subset_per_class,
)

REAL_ARCHIVE = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpeg.tar.gz"


def raises(match: str):
    """``pytest.raises(DatasetError, match=...)`` that also checks the message is one line."""

    class _Ctx:
        def __enter__(self):
            self.ctx = pytest.raises(DatasetError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            if handled:
                msg = str(self.info.value)
                assert "\n" not in msg and msg.strip() == msg, repr(msg)
            return handled

    return _Ctx()


def assert_same(got: CifarData, want: CifarData, atol: int = 0) -> None:
    assert got.name == want.name
    assert got.class_names == tuple(want.class_names)
    for split in ("train", "test"):
        gx, wx = getattr(got, f"{split}_images"), getattr(want, f"{split}_images")
        assert gx.dtype == np.uint8 and gx.shape == wx.shape
        np.testing.assert_array_equal(
            getattr(got, f"{split}_labels"), getattr(want, f"{split}_labels")
        )
        diff = np.abs(gx.astype(np.int16) - wx.astype(np.int16))
        if atol:
            assert diff.mean() <= atol  # JPEG: lossy, compare on average
        else:
            assert (diff == 0).all()
    assert got.train_labels.dtype == np.int64


# --------------------------------------------------------------------------- synthetic helpers


def test_make_images_learnable_and_deterministic():
    x, y = make_images(200, 10, seed=3)
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [20] * 10
    x2, y2 = make_images(200, 10, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # Nearest class mean (from another seed) classifies far above chance.
    tx, ty = make_images(500, 10, seed=4)
    means = np.stack([tx[ty == c].reshape(-1, 3072).mean(0) for c in range(10)])
    dist = ((x.reshape(-1, 3072)[:, None, :].astype(np.float32) - means) ** 2).sum(-1)
    assert (dist.argmin(1) == y).mean() > 0.9


# --------------------------------------------------------------------------- torchvision layout


def test_torchvision_cifar10_folder_and_parent(tmp_path):
    want = write_torchvision_cifar10(tmp_path / "src", n_train_per_class=3, n_test_per_class=2)
    got = import_dataset(want.source, data_dir=tmp_path / "d")
    assert_same(got, want)
    assert got.source == str(Path(want.source).resolve())
    assert got.checksum == want.checksum
    assert Path(got.extra["cache_path"]) == tmp_path / "d/cache/cifar10.npz"
    # The parent folder works too, and the name is inferred.
    got2 = import_dataset(tmp_path / "src", data_dir=tmp_path / "d2")
    assert got2.checksum == want.checksum


def test_torchvision_cifar100(tmp_path):
    want = write_torchvision_cifar100(tmp_path / "src", n_train_per_class=2, n_test_per_class=1)
    got = import_dataset(tmp_path / "src", data_dir=tmp_path / "d")
    assert_same(got, want)
    assert got.name == "cifar100" and got.num_classes == 100
    assert got.class_names == CIFAR100_CLASSES


def test_torchvision_archive_like_official_download(tmp_path):
    want = write_torchvision_cifar10(tmp_path / "src")
    arc = make_archive(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz")
    got = import_dataset(arc, data_dir=tmp_path / "d")
    assert_same(got, want)


def test_folder_with_both_torchvision_sets_needs_name(tmp_path):
    write_torchvision_cifar10(tmp_path / "src")
    want = write_torchvision_cifar100(tmp_path / "src")
    with raises("pass the dataset name"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")
    assert import_dataset(tmp_path / "src", "cifar100", tmp_path / "d").checksum == want.checksum


def test_torchvision_missing_file_and_bad_pickle(tmp_path):
    want = write_torchvision_cifar10(tmp_path / "src")
    folder = Path(want.source)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with raises(r"cannot unpickle .*data_batch_3"):
        import_dataset(folder, data_dir=tmp_path / "d")
    (folder / "data_batch_3").unlink()
    with raises(r"lacks data_batch_3"):
        import_dataset(folder, data_dir=tmp_path / "d")


# --------------------------------------------------------------------------- class folders


@pytest.mark.parametrize("kind", ["dir", "tar.gz", "zip", "tar"])
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_class_folders_cifar10(tmp_path, kind, fmt):
    want = write_class_folders(tmp_path / "src", 10, n_train=3, n_test=2, fmt=fmt)
    src = (
        tmp_path / "src"
        if kind == "dir"
        else make_archive(tmp_path / "src", tmp_path / f"a.{kind}", kind)
    )
    got = import_dataset(src, data_dir=tmp_path / "d")
    assert_same(got, want, atol=0 if fmt == "png" else 5)
    assert got.name == "cifar10" and got.class_names == CIFAR10_CLASSES


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_class_folders_under_top_level_folder(tmp_path, kind):
    want = write_class_folders(tmp_path / "src" / "cifar10-images", 10, n_train=2, n_test=1)
    if kind == "dir":
        src = tmp_path / "src"
    else:
        src = make_archive(tmp_path / "src" / "cifar10-images", tmp_path / "a.zip", "zip", top="x")
    assert_same(import_dataset(src, data_dir=tmp_path / "d"), want)


def test_class_folders_cifar100_tgz(tmp_path):
    want = write_class_folders(tmp_path / "src", 100, n_train=1, n_test=1)
    arc = make_archive(tmp_path / "src", tmp_path / "c100.tgz", "tgz")
    got = import_dataset(arc, data_dir=tmp_path / "d")
    assert_same(got, want)
    assert got.name == "cifar100"


def test_numbered_and_aliased_folders(tmp_path):
    short = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    numbered = [f"{i}_{n}" for i, n in enumerate(short)]
    want = write_class_folders(tmp_path / "num", 10, names=numbered, n_train=2, n_test=1)
    assert_same(import_dataset(tmp_path / "num", data_dir=tmp_path / "d"), want)
    # Tutorial names (plane, car) sort differently from CIFAR's order; labels must not follow
    # the alphabetical folder order.
    want = write_class_folders(tmp_path / "alias", 10, names=short, n_train=2, n_test=1)
    got = import_dataset(tmp_path / "alias", data_dir=tmp_path / "d")
    assert_same(got, want)
    assert got.class_names == CIFAR10_CLASSES


def test_numbered_folder_contradicting_its_name(tmp_path):
    names = [f"{i}_{n}" for i, n in enumerate(CIFAR10_CLASSES)]
    names[0], names[1] = "0_automobile", "1_airplane"
    write_class_folders(tmp_path / "src", 10, names=names, n_train=1, n_test=1)
    with raises("numbered 0 but cifar10 labels 'automobile' as 1"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


def test_greyscale_and_rgba_images_become_rgb(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    grey = np.full((32, 32), 77, np.uint8)
    Image.fromarray(grey).save(tmp_path / "src/train/cat/0000.png")
    Image.fromarray(np.full((32, 32, 4), 200, np.uint8)).save(tmp_path / "src/test/dog/0000.png")
    got = import_dataset(tmp_path / "src", data_dir=tmp_path / "d")
    assert (got.train_images[3] == 77).all()
    assert (got.test_images[5] == 200).all()


def test_junk_files_are_ignored(tmp_path):
    want = write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    (tmp_path / "src/README.txt").write_text("hi")
    (tmp_path / "src/train/cat/.DS_Store").write_bytes(b"\0")
    (tmp_path / "src/train/cat/notes.txt").write_text("x")
    (tmp_path / "src/.hidden").mkdir()
    assert_same(import_dataset(tmp_path / "src", data_dir=tmp_path / "d"), want)
    (tmp_path / "src/.hidden").rmdir()
    arc = make_archive(tmp_path / "src", tmp_path / "a.zip", "zip")
    assert_same(import_dataset(arc, data_dir=tmp_path / "d"), want)


# --------------------------------------------------------------------------- load_dataset & cache


def test_load_dataset_builds_then_reuses_cache(tmp_path):
    want = write_torchvision_cifar10(tmp_path)
    first = load_dataset("cifar10", tmp_path, download=False)
    assert_same(first, want)
    assert cache_path(tmp_path, "cifar10").is_file()
    for f in Path(want.source).iterdir():  # the second load must not need the source
        f.unlink()
    second = load_dataset("cifar10", tmp_path, download=False)
    assert_same(second, want)
    assert second.checksum == first.checksum == want.checksum
    assert second.source == first.source == str(Path(want.source).resolve())
    assert cached_datasets(tmp_path) == ["cifar10"]


def test_load_dataset_default_dir_from_env(tmp_path, monkeypatch):
    want = write_torchvision_cifar100(tmp_path)
    monkeypatch.setenv("CIFAR_HPO_DATA_DIR", str(tmp_path))
    assert load_dataset("cifar100", download=False).checksum == want.checksum
    monkeypatch.delenv("CIFAR_HPO_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with raises(r"cifar10 not found in data/"):
        load_dataset("cifar10", download=False)


def test_load_dataset_class_folder_and_archive_lookup(tmp_path):
    want = write_class_folders(tmp_path / "cifar10", 10, n_train=1, n_test=1)
    assert_same(load_dataset("cifar10", tmp_path, download=False), want)
    # An archive named cifar10*.zip is found; cifar100*.zip is not mistaken for it.
    d = tmp_path / "d"
    d.mkdir()
    c100 = write_class_folders(tmp_path / "c100", 100, n_train=1, n_test=1)
    make_archive(tmp_path / "c100", d / "cifar100-images.zip", "zip")
    with raises("cifar10 not found"):
        load_dataset("cifar10", d, download=False)
    make_archive(tmp_path / "cifar10", d / "cifar10-jpeg.tar.gz", "tar.gz")
    assert_same(load_dataset("cifar10", d, download=False), want)
    assert_same(load_dataset("cifar100", d, download=False), c100)


def test_cache_is_written_atomically_and_overwritten(tmp_path):
    a = write_class_folders(tmp_path / "a", 10, n_train=1, n_test=1, seed=1)
    b = write_class_folders(tmp_path / "b", 10, n_train=2, n_test=1, seed=2)
    import_dataset(tmp_path / "a", data_dir=tmp_path / "d")
    got = import_dataset(tmp_path / "b", data_dir=tmp_path / "d")
    assert got.checksum == b.checksum != a.checksum
    assert load_dataset("cifar10", tmp_path / "d").checksum == b.checksum
    assert sorted(p.name for p in (tmp_path / "d/cache").iterdir()) == ["cifar10.npz"]


def test_checksum_stable_and_sensitive(tmp_path):
    data = make_cifar_data("cifar10", 2, 1, seed=5)
    c1 = compute_checksum(data.train_images, data.train_labels, data.test_images, data.test_labels)
    again = make_cifar_data("cifar10", 2, 1, seed=5)
    args = (again.train_images, again.train_labels, again.test_images, again.test_labels)
    assert compute_checksum(*args) == c1 == data.checksum
    assert len(c1) == 64 and int(c1, 16) >= 0
    # Labels of another integer dtype hash the same (hashed as int64).
    assert compute_checksum(args[0], args[1].astype(np.int32), args[2], args[3]) == c1
    changed = again.train_images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert compute_checksum(changed, *args[1:]) != c1
    path = save_cache(data, tmp_path / "x.npz")
    assert load_cache(path).checksum == c1


def test_dataset_info(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=3, n_test=2)
    data = import_dataset(tmp_path / "src", data_dir=tmp_path / "d")
    info = dataset_info(tmp_path / "d", "cifar10")
    assert info.train_counts == (3,) * 10 and info.test_counts == (2,) * 10
    assert info.num_train == 30 and info.num_test == 20
    assert info.checksum == data.checksum and info.source == data.source
    assert info.cache_bytes == (tmp_path / "d/cache/cifar10.npz").stat().st_size
    d = info.to_dict()
    assert d["train_counts"]["cat"] == 3 and d["num_test"] == 20
    with raises(r"no cifar100 cache at .*cifar100\.npz; create it with: cifar-hpo data import"):
        dataset_info(tmp_path / "d", "cifar100")


def test_fake_torchvision_download(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_torchvision_cifar10(root, n_train_per_class=1, n_test_per_class=1)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_dataset("cifar10", tmp_path / "d")
    assert calls == [(str(tmp_path / "d"), True)]
    assert data.train_images.shape == (10, 32, 32, 3)
    assert cache_path(tmp_path / "d", "cifar10").is_file()


# --------------------------------------------------------------------------- errors


def test_unknown_dataset_name(tmp_path):
    with raises(r"unknown dataset 'cifar1000'; expected one of: cifar10, cifar100"):
        load_dataset("cifar1000", tmp_path)
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    with raises(r"unknown dataset 'mnist'"):
        import_dataset(tmp_path / "src", "mnist", tmp_path / "d")


def test_missing_dataset_without_download(tmp_path):
    with raises(r"cifar100 not found in .* download is off; import a copy with: cifar-hpo data"):
        load_dataset("cifar100", tmp_path / "empty", download=False)


def test_failing_download(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *a, **kw):
            raise RuntimeError("<urlopen error [Errno -3]\nTemporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with raises(
        r"^cifar10 not found in .* and download failed \(RuntimeError: <urlopen error .*\); "
        r"import a copy with: cifar-hpo data import PATH$"
    ):
        load_dataset("cifar10", tmp_path / "d")


def test_missing_path(tmp_path):
    with raises(r"nope does not exist; expected"):
        import_dataset(tmp_path / "nope", data_dir=tmp_path / "d")


def test_wrong_layout_dir(tmp_path):
    (tmp_path / "src/images").mkdir(parents=True)
    (tmp_path / "src/other").mkdir()
    (tmp_path / "src/labels.csv").write_text("a,b")
    with raises(r"no dataset layout recognised in .*src \(found: images/, labels.csv, other/\)"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


def test_wrong_layout_archive(tmp_path):
    (tmp_path / "src/images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "src/images/a.png")
    arc = make_archive(tmp_path / "src", tmp_path / "a.tar.gz")
    with raises(
        r"no dataset layout recognised in archive .*a\.tar\.gz \(top-level entries: images/"
    ):
        import_dataset(arc, data_dir=tmp_path / "d")


@pytest.mark.parametrize("kind", ["dir", "tar.gz", "zip"])
def test_unreadable_image_names_the_file(tmp_path, kind):
    write_class_folders(tmp_path / "src", 10, n_train=2, n_test=1, fmt="jpg")
    (tmp_path / "src/train/cat/0001.jpg").write_bytes(b"\xff\xd8\xff garbage")
    src = (
        tmp_path / "src"
        if kind == "dir"
        else make_archive(tmp_path / "src", tmp_path / f"a.{kind}", kind)
    )
    with raises(r"cannot decode image train/cat/0001\.jpg in .*(src|a\." + kind + ")"):
        import_dataset(src, data_dir=tmp_path / "d")


def test_truncated_png(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    p = tmp_path / "src/test/frog/0000.png"
    p.write_bytes(p.read_bytes()[:60])
    with raises(r"cannot decode image test/frog/0000\.png"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_wrong_image_size(tmp_path, kind):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(tmp_path / "src/train/ship/0000.png")
    src = (
        tmp_path / "src"
        if kind == "dir"
        else make_archive(tmp_path / "src", tmp_path / "a.zip", "zip")
    )
    with raises(r"image train/ship/0000\.png in .* is 40x24 pixels; expected 32x32"):
        import_dataset(src, data_dir=tmp_path / "d")


def test_wrong_class_folders(tmp_path):
    names = list(CIFAR10_CLASSES)
    names[2], names[7] = "birdie", "pony"
    write_class_folders(tmp_path / "src", 10, names=names, n_train=1, n_test=1)
    with raises(r"do not match cifar10: unexpected \[birdie, pony\], missing \[bird, horse\]"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


def test_missing_cifar100_class_and_wrong_torchvision_set(tmp_path):
    write_class_folders(tmp_path / "src", 100, n_train=1, n_test=1)
    for split in ("train", "test"):
        (tmp_path / f"src/{split}/apple/0000.png").unlink()
        (tmp_path / f"src/{split}/apple").rmdir()
    with raises(r"class folders in .*src do not match cifar100: missing \[apple\]$"):
        import_dataset(tmp_path / "src", "cifar100", tmp_path / "d")
    write_torchvision_cifar100(tmp_path / "tv")
    with raises(r"tv holds cifar-100-python \(cifar100\) but not cifar-10-batches-py"):
        import_dataset(tmp_path / "tv", "cifar10", tmp_path / "d")
    with raises(r"cifar-100-python is a cifar100 torchvision folder, not cifar10"):
        import_dataset(tmp_path / "tv/cifar-100-python", "cifar10", tmp_path / "d")


def test_class_count_neither_10_nor_100(tmp_path):
    write_class_folders(tmp_path / "src", 7, n_train=1, n_test=1)
    with raises(r"has 7 classes; expected 10 \(cifar10\) or 100 \(cifar100\)"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


def test_name_does_not_fit_class_folders(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    with raises(r"do not match cifar100: unexpected \[airplane, automobile"):
        import_dataset(tmp_path / "src", "cifar100", tmp_path / "d")


@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_empty_class_folder(tmp_path, kind):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    (tmp_path / "src/test/deer/0000.png").unlink()
    src = (
        tmp_path / "src"
        if kind == "dir"
        else make_archive(tmp_path / "src", tmp_path / "a.tar", "tar")
    )
    with raises(r"class folder test/deer in .* has no \.png/\.jpg/\.jpeg images"):
        import_dataset(src, data_dir=tmp_path / "d")


def test_missing_test_split(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    for p in sorted((tmp_path / "src/test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / "src/test").rmdir()
    with raises(r"has no images under test/ \(found images under: train/\); expected train/"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


def test_train_test_class_mismatch(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=1, n_test=1)
    (tmp_path / "src/test/truck").rename(tmp_path / "src/test/lorry")
    with raises(r"different class folders: only in train \[truck\], only in test \[lorry\]"):
        import_dataset(tmp_path / "src", data_dir=tmp_path / "d")


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip", ".tar"])
def test_not_an_archive(tmp_path, suffix):
    bad = tmp_path / f"junk{suffix}"
    bad.write_bytes(os.urandom(2000))
    with raises(r"junk\..* is not a readable archive; expected a \.tar, \.tar\.gz/\.tgz or \.zip"):
        import_dataset(bad, data_dir=tmp_path / "d")


def test_truncated_archive(tmp_path):
    write_class_folders(tmp_path / "src", 10, n_train=20, n_test=2)
    arc = make_archive(tmp_path / "src", tmp_path / "a.tar.gz")
    raw = arc.read_bytes()
    arc.write_bytes(raw[: len(raw) // 2])
    with raises(r"cannot read archive .*a\.tar\.gz: "):
        import_dataset(arc, data_dir=tmp_path / "d")


def test_corrupt_cache(tmp_path):
    path = cache_path(tmp_path, "cifar10")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with raises(r"cannot read cache .*cifar10\.npz .*delete it and re-import"):
        load_dataset("cifar10", tmp_path, download=False)
    np.savez(path, train_images=np.zeros((1, 32, 32, 3), np.uint8))
    with raises(r"cache .*cifar10\.npz lacks train_labels"):
        load_dataset("cifar10", tmp_path, download=False)


def test_save_cache_rejects_bad_arrays(tmp_path):
    data = make_cifar_data("cifar10", 1, 1)
    bad = CifarData(
        name="cifar10",
        train_images=data.train_images[:, :16],
        train_labels=data.train_labels,
        test_images=data.test_images,
        test_labels=data.test_labels,
        class_names=CIFAR10_CLASSES,
    )
    with raises(r"train images of memory are uint8 \(10, 16, 32, 3\); expected uint8"):
        save_cache(bad, tmp_path / "x.npz")
    bad = CifarData(
        name="cifar10",
        train_images=data.train_images,
        train_labels=data.train_labels + 5,
        test_images=data.test_images,
        test_labels=data.test_labels,
        class_names=CIFAR10_CLASSES,
    )
    with raises(r"train labels of memory span \[5, 14\]; expected \[0, 9\]"):
        save_cache(bad, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.25, 0.5])
def test_stratified_split_properties(frac):
    labels = np.repeat(np.arange(10), [50, 40, 30, 20, 10, 9, 8, 7, 6, 5])
    labels = np.random.default_rng(0).permutation(labels)
    tr, va = stratified_split(labels, frac, seed=3)
    assert tr.dtype == va.dtype == np.int64
    assert (np.diff(tr) > 0).all() and (np.diff(va) > 0).all() if len(va) > 1 else True
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(labels)))
    counts = np.bincount(labels, minlength=10)
    want = [math.floor(n * frac + 0.5) for n in counts]
    assert np.bincount(labels[va], minlength=10).tolist() == want
    tr2, va2 = stratified_split(labels, frac, seed=3)
    np.testing.assert_array_equal(va, va2)
    np.testing.assert_array_equal(tr, tr2)
    if frac:
        assert not np.array_equal(va, stratified_split(labels, frac, seed=4)[1])


def test_stratified_split_empty_val():
    tr, va = stratified_split(np.array([0, 1, 1, 2]), 0.0)
    assert va.size == 0 and tr.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("frac", [-0.1, 1.0, 1.5, float("nan"), True, "0.1", None])
def test_stratified_split_bad_fraction(frac):
    with raises(r"val_fraction is .*; expected a number in \[0, 1\)"):
        stratified_split(np.arange(10) % 2, frac)


def test_split_rejects_bad_labels():
    with raises(r"labels are float64 with shape \(4,\); expected a 1-D integer array"):
        stratified_split(np.zeros(4), 0.1)
    with raises(r"expected a 1-D integer array"):
        subset_per_class(np.zeros((2, 2), np.int64), 1)


def test_subset_per_class():
    labels = np.repeat(np.arange(5), [10, 8, 6, 4, 2])
    idx = subset_per_class(labels, 3, seed=1)
    assert idx.dtype == np.int64 and (np.diff(idx) > 0).all()
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3, 3, 2]
    half = subset_per_class(labels, 0.5, seed=1)
    assert np.bincount(labels[half]).tolist() == [5, 4, 3, 2, 1]
    tiny = subset_per_class(labels, 0.01, seed=1)
    assert np.bincount(labels[tiny]).tolist() == [1] * 5
    assert subset_per_class(labels, 1.0).size == len(labels)
    # Nested: a smaller subset lies inside a larger one for the same seed.
    assert np.isin(subset_per_class(labels, 2, seed=7), subset_per_class(labels, 5, seed=7)).all()
    np.testing.assert_array_equal(subset_per_class(labels, 3, 1), idx)


@pytest.mark.parametrize("bad", [0, -3, 0.0, 1.5, True, "5"])
def test_subset_per_class_bad_size(bad):
    with raises(r"subset (size|fraction) is .*; expected"):
        subset_per_class(np.arange(10) % 2, bad)


# --------------------------------------------------------------------------- hygiene & real copy


def test_data_package_imports_no_sweep_or_cli_libraries():
    code = (
        "import sys, cifar_hpo.data\n"
        "bad = [m for m in ('optuna', 'mlflow', 'typer', 'torchvision') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"{REAL_ARCHIVE} not present")
def test_real_archive_layout(tmp_path):
    """Import a 40-image sample of the real JPEG archive (2 files per split and class)."""
    per_group: dict[tuple[str, str], int] = {}
    mini = tmp_path / "mini.tar.gz"
    with tarfile.open(REAL_ARCHIVE, "r|gz") as src, tarfile.open(mini, "w:gz") as dst:
        for m in src:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) < 3:
                continue
            key = (parts[-3], parts[-2])
            if per_group.get(key, 0) < 2:
                per_group[key] = per_group.get(key, 0) + 1
                dst.addfile(m, io.BytesIO(src.extractfile(m).read()))
    assert len(per_group) == 20
    data = import_dataset(mini, data_dir=tmp_path / "d")
    assert data.name == "cifar10" and data.class_names == CIFAR10_CLASSES
    assert data.train_images.shape == (20, 32, 32, 3) and data.test_images.shape == (20, 32, 32, 3)
    assert data.train_labels.tolist() == np.repeat(np.arange(10), 2).tolist()
    assert 40 < data.train_images.mean() < 215  # real photos, not blank
