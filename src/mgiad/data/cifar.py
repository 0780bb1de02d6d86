"""CIFAR-10/100 from the original python-pickle tarballs, loaded with a restricted unpickler."""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from . import download as dl
from .info import DATASETS, DatasetError

__all__ = ["load_cifar", "read_cifar_batch", "safe_pickle_load", "CIFAR_LAYOUT"]

CIFAR_LAYOUT = {
    "cifar10": dict(folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz", label_key="labels",
                    train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
                    subdirs=("cifar-10", "cifar10")),
    "cifar100": dict(folder="cifar-100-python", archive="cifar-100-python.tar.gz", label_key="fine_labels",
                     train=("train",), test=("test",), subdirs=("cifar-100", "cifar100")),
}


def _latin1_encode(text, encoding="latin1"):
    # Python 3 pickles bytes with protocol < 3 as _codecs.encode(str, "latin1"); allow only that.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode is only allowed with latin1")
    return codecs.encode(text, "latin1")


def _allowed_globals() -> dict:
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray as ma
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain containers, strings, numbers and numpy arrays: no other global is reachable."""

    def find_class(self, module, name):
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a dataset file")
        return obj


def safe_pickle_load(path: Path):
    """Unpickle ``path`` (``encoding='bytes'``) allowing only data types; DatasetError otherwise."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except Exception as err:
        raise DatasetError(f"cannot read {path}: {err}. It is not an original CIFAR pickle (corrupt, "
                           f"truncated or unsafe); delete it and extract/download the dataset again.") from err


def read_cifar_batch(path: Path, label_key: str, num_classes: int):
    """One pickled batch -> (x uint8 ``(N, 3, 32, 32)`` RGB from the planar layout, y int64 ``(N,)``)."""
    d = safe_pickle_load(path)
    if not isinstance(d, dict):
        raise DatasetError(f"{path} holds a {type(d).__name__}, expected a dict with 'data' and '{label_key}'.")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise DatasetError(f"{path} lacks the key 'data' or '{label_key}' (keys: {sorted(map(str, d))}).")
    x, y = d["data"], np.asarray(d[label_key])
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072):
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                           f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}.")
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise DatasetError(f"{path}: '{label_key}' must be {x.shape[0]} integers in 0..{num_classes - 1}.")
    return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(y.astype(np.int64))


def _roots(data_dir: Path, layout: dict) -> list[Path]:
    return [data_dir] + [data_dir / s for s in layout["subdirs"]]


def _find_folder(data_dir: Path, layout: dict) -> Path | None:
    needed = layout["train"] + layout["test"]
    for root in _roots(data_dir, layout):
        for d in (root / layout["folder"], root):
            if all((d / n).is_file() for n in needed):
                return d
    return None


def load_cifar(name: str, data_dir: Path, download: bool = False) -> dict:
    """``{"train": (x, y), "test": (x, y)}`` for ``cifar10``/``cifar100``.

    Uses the extracted folder if present, else extracts the tarball found in ``data_dir`` (or
    ``data_dir/cifar-10`` etc.) next to it once, else downloads it into ``data_dir`` if asked.
    """
    layout, data_dir = CIFAR_LAYOUT[name], Path(data_dir)
    folder = _find_folder(data_dir, layout)
    if folder is None:
        archive = next((r / layout["archive"] for r in _roots(data_dir, layout)
                        if (r / layout["archive"]).is_file()), None)
        if archive is None and download:
            archive = dl.download(name, data_dir)[0]
        if archive is not None:
            dl.safe_extract(archive, archive.parent, exist_ok=True)
            folder = _find_folder(archive.parent, layout)
            if folder is None:
                raise DatasetError(f"{archive.parent / layout['folder']} lacks some of "
                                   f"{', '.join(layout['train'] + layout['test'])} after extracting {archive}: "
                                   f"remove that folder if it is an old incomplete copy, and check that the "
                                   f"archive is the original file (MD5 {dl.MD5[layout['archive']]}).")
    if folder is None:
        raise DatasetError(
            f"{name} not found: looked for {layout['folder']}/ and {layout['archive']} in "
            f"{', '.join(str(r.resolve()) for r in _roots(data_dir, layout))}. Put the original "
            f"{layout['archive']} (MD5 {dl.MD5[layout['archive']]}, from "
            f"{dl.RESOURCES[name].base_url}{layout['archive']}) in {data_dir.resolve()}, or rerun "
            f"with --download (download=True) to fetch it there.")
    num_classes = DATASETS[name].num_classes
    out = {}
    for split in ("train", "test"):
        parts = [read_cifar_batch(folder / n, layout["label_key"], num_classes) for n in layout[split]]
        out[split] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    return out
