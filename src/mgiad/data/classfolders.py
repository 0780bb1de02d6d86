"""Class-folder layouts (``train/<class>/*``, ``val/<class>/*``): the image files of a folder and
the classes and samples of a layout. A leaf beside :mod:`.info`, which reads the user's folder's
classes from it, and :mod:`.folder`, which decodes the images."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "FOLDER_HELP", "images_in", "scan_class_folders"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def images_in(folder: Path) -> list[Path]:
    """Image files of ``folder`` sorted by name (``scandir``: no extra stat per file)."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]
    return [folder / n for n in sorted(names)]


FOLDER_HELP = ("Your own images: --data-dir DIR with DIR/train/<class>/ and DIR/val/<class>/ "
               "holding image files (.png, .jpg, .jpeg), the same class folders in both; the class "
               "names are the folder names, in sorted order.")


def scan_class_folders(root: Path, what: str = "the image folder",
                       help: str = FOLDER_HELP) -> tuple[list[str], dict]:
    """Classes (sorted folder names) and ``{"train"|"test": [(path, label), ...]}`` from
    ``root/train/<class>/`` and ``root/val/<class>/``; :class:`DatasetError` (ending with ``help``)
    when the layout is not that."""
    root = Path(root)
    missing = [str((root / s).resolve()) for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise DatasetError(f"{what} at {root}: {' and '.join(missing)} missing. " + help)
    class_lists = {s: sorted(p.name for p in (root / s).iterdir() if p.is_dir()) for s in ("train", "val")}
    if class_lists["train"] != class_lists["val"]:
        only_t = sorted(set(class_lists["train"]) - set(class_lists["val"]))
        only_v = sorted(set(class_lists["val"]) - set(class_lists["train"]))
        raise DatasetError(f"{what} at {root}: train/ and val/ must hold the same class folders; only in "
                           f"train: {only_t[:5]}{'...' if len(only_t) > 5 else ''}, only in val: "
                           f"{only_v[:5]}{'...' if len(only_v) > 5 else ''}. " + help)
    classes = class_lists["train"]
    if not classes:
        raise DatasetError(f"{what} at {root}: train/ has no class folders. " + help)
    splits = {}
    for split, sub in (("train", "train"), ("test", "val")):
        samples = [(p, i) for i, c in enumerate(classes) for p in images_in(root / sub / c)]
        if not samples:
            raise DatasetError(f"{what} at {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                               f"{root / sub}/<class>/. " + help)
        splits[split] = samples
    return classes, splits
