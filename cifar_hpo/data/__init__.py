"""CIFAR-10/100 data: load, import and cache datasets; stratified index splits.

Typical use::

    from cifar_hpo.data import load_dataset, stratified_split

    data = load_dataset("cifar10")  # cache, local copy, or torchvision download
    train_idx, val_idx = stratified_split(data.train_labels, val_fraction=0.1, seed=0)

This package never imports optuna, mlflow or typer.
"""

from cifar_hpo.data.cache import (
    DATA_DIR_ENV,
    DatasetInfo,
    cache_path,
    cached_datasets,
    compute_checksum,
    dataset_info,
    load_cache,
    resolve_data_dir,
    save_cache,
)
from cifar_hpo.data.classes import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CLASSES,
    DATASET_NAMES,
)
from cifar_hpo.data.dataset import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    CifarData,
    DatasetError,
)
from cifar_hpo.data.load import import_dataset, load_dataset
from cifar_hpo.data.sources import read_source, validate_data
from cifar_hpo.data.split import stratified_split, subset_per_class

checksum = compute_checksum

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CLASSES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "CifarData",
    "DatasetError",
    "DatasetInfo",
    "cache_path",
    "cached_datasets",
    "checksum",
    "compute_checksum",
    "dataset_info",
    "import_dataset",
    "load_cache",
    "load_dataset",
    "read_source",
    "resolve_data_dir",
    "save_cache",
    "stratified_split",
    "subset_per_class",
    "validate_data",
]
