"""Check that dataset files are what they claim to be: the split sizes every dataset has, and the
published MD5 of Fashion-MNIST's files (which also catches MNIST, or the train and test files
exchanged). ``verify=False`` in :func:`~mgiad.data.build_loaders`, ``--no-verify-data`` or
``MGIAD_VERIFY_DATA=0`` turn it off, e.g. for a deliberate subset."""
from __future__ import annotations

import os
from pathlib import Path

from . import download as dl
from .info import DatasetError, DatasetInfo

__all__ = ["verification_enabled", "verify_splits"]

OPT_OUT = ("pass --no-verify-data (verify=False, or MGIAD_VERIFY_DATA=0) if these are "
           "deliberately other files")


def verification_enabled(verify: bool | None) -> bool:
    if verify is not None:
        return bool(verify)
    return os.environ.get("MGIAD_VERIFY_DATA", "1") != "0"


def verify_splits(info: DatasetInfo, splits: dict, data_dir: Path, classes: int | None = None) -> None:
    """Raise :class:`DatasetError` when the loaded splits or their files are not the dataset's
    (``classes``: the number of class folders, for image-folder datasets)."""
    if info.name == "fashion-mnist":
        _verify_fashion_files(Path(data_dir))
    if classes is not None and classes != info.num_classes:
        raise DatasetError(f"{info.name}: {classes:,} class folder{'s' if classes != 1 else ''} "
                           f"where {info.name} has {info.num_classes:,} (data folder "
                           f"{Path(data_dir).resolve()}); a model trained on them would still have "
                           f"{info.num_classes:,} outputs. Complete the folders, or {OPT_OUT}.")
    sizes = {split: len(splits[split][0]) for split in ("train", "test")}
    expected = {"train": info.train_size, "test": info.test_size}
    if sizes == expected:
        return
    swapped = sizes == {"train": info.test_size, "test": info.train_size}
    raise DatasetError(
        f"{info.name}: the training split has {sizes['train']:,} images and the test split "
        f"{sizes['test']:,}, where {info.name} has {info.train_size:,} and {info.test_size:,}"
        + ("; the training and test files look exchanged" if swapped else
           "; the files are incomplete or belong to another dataset")
        + f" (data folder {Path(data_dir).resolve()}). Restore the original files, or {OPT_OUT}.")


def _verify_fashion_files(data_dir: Path) -> None:
    from .idx import FASHION_FILES, find_fashion_mnist
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        return
    names = [n for pair in FASHION_FILES.values() for n in pair]
    known = {dl.MD5[n]: n for n in names}
    for name in names:
        path = folder / name
        if not path.is_file():  # a decompressed copy: its size check happens on loading
            continue
        md5 = dl.file_md5(path)
        if md5 == dl.MD5[name]:
            continue
        if md5 in known:
            raise DatasetError(f"{path} holds the contents of {known[md5]}: Fashion-MNIST's files "
                               "were exchanged or renamed. Put each file under its own name, or "
                               f"{OPT_OUT}.")
        raise DatasetError(f"{path} is not the original Fashion-MNIST file (MD5 {md5}, expected "
                           f"{dl.MD5[name]}): another dataset (MNIST has the same file names) or a "
                           f"modified copy. Restore it (mgiad train --download fetches it), or "
                           f"{OPT_OUT}.")
