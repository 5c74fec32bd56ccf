"""CIFAR classifiers by name: ``create_model("cifarnet", num_classes=10, dropout=0.1)``.

Every model maps normalized float images (B, 3, 32, 32) to logits (B, num_classes), builds on
CPU and works with ``memory_format=torch.channels_last``. This package imports only torch and
torchvision (never optuna, mlflow or typer), so the training core can depend on it.
"""

from . import airbench94, reference, seeds  # noqa: F401  (importing registers the models)
from .registry import (
    ModelInfo,
    UnknownModelError,
    count_macs,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "count_macs",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
