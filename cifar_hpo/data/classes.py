"""Canonical CIFAR class names, in label order (label ``i`` is ``NAMES[i]``)."""

from __future__ import annotations

from cifar_hpo.data.dataset import DatasetError

DATASET_NAMES: tuple[str, ...] = ("cifar10", "cifar100")

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# The 100 fine labels of CIFAR-100; the canonical order happens to be alphabetical.
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

# The 20 coarse labels (superclasses) of CIFAR-100, in label order.
CIFAR100_COARSE_CLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

CLASSES: dict[str, tuple[str, ...]] = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}

# Folder names other datasets use for CIFAR-10 classes (e.g. the PyTorch tutorial's ``plane``).
CLASS_ALIASES: dict[str, str] = {"plane": "airplane", "car": "automobile"}


def check_name(name: str) -> str:
    """Validate a dataset name.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.

    Returns:
        The name, unchanged.

    Raises:
        DatasetError: the name is not one of :data:`DATASET_NAMES`.
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
    return name


def name_for_class_count(num_classes: int, where: str) -> str:
    """Infer the dataset name from its number of classes (10 -> cifar10, 100 -> cifar100).

    Raises:
        DatasetError: the count is neither 10 nor 100.
    """
    for name, names in CLASSES.items():
        if len(names) == num_classes:
            return name
    raise DatasetError(
        f"{where} has {num_classes} classes; expected 10 (cifar10) or 100 (cifar100)"
    )
