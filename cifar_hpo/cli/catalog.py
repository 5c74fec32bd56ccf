"""``data import``, ``data info`` and ``models``: the datasets and models there are to train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cifar_hpo.cli import render
from cifar_hpo.cli.boundary import friendly_errors
from cifar_hpo.cli.options import DataDirOpt, DatasetOpt


@friendly_errors
def data_import(
    path: Annotated[Path, typer.Argument(help="torchvision folder, class folders or archive.")],
    name: Annotated[str | None, typer.Option(help="cifar10 or cifar100 [default: guess].")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Decode a dataset copy once into the uint8 cache every run reuses."""
    from cifar_hpo.data import dataset_info, import_dataset

    with render.console.status(f"decoding {path} ..."):
        data = import_dataset(path, name=name, data_dir=data_dir)
    render.dataset_imported(data, dataset_info(data_dir, data.name))


@friendly_errors
def data_info(dataset: DatasetOpt = "cifar10", data_dir: DataDirOpt = None) -> None:
    """Counts per class and split, source and cache path of an imported dataset."""
    from cifar_hpo.data import dataset_info

    render.dataset_info(dataset_info(data_dir, dataset))


@friendly_errors
def models_cmd(
    num_classes: Annotated[int, typer.Option(help="Classes for the counts.")] = 10,
) -> None:
    """List registered models with source, parameters and MACs per 32x32 image."""
    render.models(num_classes, model_rows(num_classes))


def model_rows(num_classes: int) -> list[tuple]:
    """(``model_info``, parameters, MACs per 32x32 image) of every registered model, built
    with its default hyperparameters for ``num_classes`` classes."""
    from cifar_hpo.models import count_macs, count_parameters, create_model, list_models, model_info

    rows = []
    for name in list_models():
        model = create_model(name, num_classes)
        rows.append((model_info(name), count_parameters(model), count_macs(model)))
    return rows
