"""Per-dataset facts (:class:`DatasetInfo`), the registry :data:`DATASETS` and :class:`DatasetError`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import DatasetError

__all__ = ["DatasetInfo", "DatasetError", "DATASETS", "dataset_info", "default_data_dir",
           "resolve_data_dir", "class_names"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``image_size`` is the side of the model input after preprocessing (Fashion-MNIST is padded to
    32, ImageNet cropped to 224). ``mean``/``std`` are per channel on the [0, 1] scale of that
    input. ``in_memory`` datasets are decoded once and held as uint8 tensors on the training
    device; the others stream JPEGs through DataLoader workers. Sizes are the nominal split sizes.
    ``augment``: whether training batches are augmented unless asked otherwise (the paper's
    recipe: Fashion-MNIST is trained on the plain images, the others with crops and flips).
    ``class_names``: the names of the labels, where the dataset has well-known ones.
    ``model_args``: the model arguments the paper uses for the dataset besides its classes and
    channels (section 4: the ImageNet stem; BatchNorm after ``P-hat`` for the larger images).
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
    class_names: tuple[str, ...] | None = None
    model_args: dict = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {
    # digits: mean/std of the 1437 training images after the 0-255 scaling and 32x32 bilinear
    # resize: x = load_digits_split()["train"][0].float() / 255; x.mean(), x.std().
    "digits": DatasetInfo("digits", 10, 1, 32, (0.3054,), (0.3236,), True, 1437, 360,
                          class_names=tuple(str(i) for i in range(10))),
    # fashion-mnist: mean/std of the 60000 training images after zero padding to 32x32
    # (the unpadded 28x28 values are 0.2860 / 0.3530), computed the same way as for digits.
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 32, (0.2190,), (0.3318,), True, 60000, 10000,
                                 augment=False, class_names=(
                                     "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                     "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           True, 50000, 10000, class_names=(
                               "airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                               "horse", "ship", "truck")),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            True, 50000, 10000),
    # tiny-imagenet: the 10000 labelled "val" images are the test split (its "test" has no labels).
    "tiny-imagenet": DatasetInfo("tiny-imagenet", 200, 3, 64, IMAGENET_MEAN, IMAGENET_STD, True, 100000,
                                 10000, model_args={"prolong_norm": True}),
    "imagenet": DatasetInfo("imagenet", 1000, 3, 224, IMAGENET_MEAN, IMAGENET_STD, False, 1281167, 50000,
                            model_args={"stem": "imagenet", "prolong_norm": True}),
    # the user's own images (train/<class>/*, val/<class>/*): classes and sizes come from the
    # folder (dataset_info(name, data_dir)); RGB at 32x32 with ImageNet's mean/std
    "folder": DatasetInfo("folder", 0, 3, 32, IMAGENET_MEAN, IMAGENET_STD, True, 0, 0),
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


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; raises :class:`DatasetError` listing valid names.
    ``"folder"`` (the user's images) reads its classes and split sizes from ``data_dir``
    (default :func:`default_data_dir`)."""
    info = DATASETS[canonical_name(name)]
    if info.name != "folder":
        return info
    from .classfolders import scan_class_folders
    classes, splits = scan_class_folders(default_data_dir() if data_dir is None else Path(data_dir))
    return replace(info, num_classes=len(classes), class_names=tuple(classes),
                   train_size=len(splits["train"]), test_size=len(splits["test"]))


def default_data_dir() -> Path:
    """``$MGIAD_DATA_DIR`` if set, else ``./.data`` (used when ``data_dir`` is None)."""
    return Path(os.environ.get("MGIAD_DATA_DIR") or ".data")


def resolve_data_dir(given: str | None, recorded: str | None) -> str | None:
    """The data folder for a run's model: ``given`` (``--data-dir``), else the folder the run
    recorded if it exists here, else None: the default ($MGIAD_DATA_DIR or ./.data). When
    neither the recorded nor the default folder exists, the recorded one (errors then name it)."""
    if given is not None:
        return given
    if recorded and (Path(recorded).is_dir() or not default_data_dir().is_dir()):
        return recorded
    return None


def class_names() -> dict[str, list[str]]:
    """The label names of the datasets that have well-known ones."""
    return {name: list(info.class_names) for name, info in DATASETS.items() if info.class_names}
