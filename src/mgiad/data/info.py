"""Per-dataset facts (:class:`DatasetInfo`), the registry :data:`DATASETS` and :class:`DatasetError`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatasetInfo", "DatasetError", "DATASETS", "dataset_info", "default_data_dir"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """A user-facing data problem (missing files, bad checksum, corrupt file, bad argument)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``image_size`` is the side of the model input after preprocessing (Fashion-MNIST is padded to
    32, ImageNet cropped to 224). ``mean``/``std`` are per channel on the [0, 1] scale of that
    input. ``in_memory`` datasets are decoded once and held as uint8 tensors on the training
    device; the others stream JPEGs through DataLoader workers. Sizes are the nominal split sizes.
    ``augment``: whether training batches are augmented unless asked otherwise (the paper's
    recipe: Fashion-MNIST is trained on the plain images, the others with crops and flips).
    """

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple
    std: tuple
    in_memory: bool
    train_size: int
    test_size: int
    augment: bool = True


DATASETS: dict[str, DatasetInfo] = {
    # digits: mean/std of the 1437 training images after the 0-255 scaling and 32x32 bilinear
    # resize: x = load_digits_split()["train"][0].float() / 255; x.mean(), x.std().
    "digits": DatasetInfo("digits", 10, 1, 32, (0.3054,), (0.3236,), True, 1437, 360),
    # fashion-mnist: mean/std of the 60000 training images after zero padding to 32x32
    # (the unpadded 28x28 values are 0.2860 / 0.3530), computed the same way as for digits.
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 32, (0.2190,), (0.3318,), True, 60000, 10000,
                                 augment=False),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           True, 50000, 10000),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            True, 50000, 10000),
    # tiny-imagenet: the 10000 labelled "val" images are the test split (its "test" has no labels).
    "tiny-imagenet": DatasetInfo("tiny-imagenet", 200, 3, 64, IMAGENET_MEAN, IMAGENET_STD, True, 100000, 10000),
    "imagenet": DatasetInfo("imagenet", 1000, 3, 224, IMAGENET_MEAN, IMAGENET_STD, False, 1281167, 50000),
}

_ALIASES = {
    "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
    "cifar-100": "cifar100", "tinyimagenet": "tiny-imagenet", "tiny-imagenet-200": "tiny-imagenet",
    "imagenet-1k": "imagenet", "ilsvrc2012": "imagenet",
}


def canonical_name(name: str) -> str:
    """Map ``name`` (case, ``_`` vs ``-`` and a few aliases forgiven) to a key of :data:`DATASETS`."""
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {type(name).__name__}; "
                           f"valid names: {', '.join(DATASETS)}.")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, _ALIASES.get(key.replace("-", ""), key))
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; raises :class:`DatasetError` listing valid names."""
    return DATASETS[canonical_name(name)]


def default_data_dir() -> Path:
    """``$MGIAD_DATA_DIR`` if set, else ``./.data`` (used when ``data_dir`` is None)."""
    return Path(os.environ.get("MGIAD_DATA_DIR") or ".data")
