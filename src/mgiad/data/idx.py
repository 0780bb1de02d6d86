"""Fashion-MNIST: IDX (gzip) parsing and the 28x28 -> 32x32 zero-padded uint8 arrays."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from . import download as dl
from .info import DatasetError

__all__ = ["read_idx", "find_fashion_mnist", "load_fashion_mnist", "FASHION_FILES"]

FASHION_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MAGIC = {2051: 3, 2049: 1}  # images: 3 dims, labels: 1 dim (both unsigned bytes)
_RAW_MD5 = {  # decompressed files (the .gz sums live in download.MD5)
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def _bad(path: Path, why: str) -> DatasetError:
    md5 = dl.MD5.get(path.name) or _RAW_MD5.get(path.name)
    hint = f" The original {path.name} has MD5 {md5}." if md5 else ""
    return DatasetError(f"{path} is not a valid IDX file: {why}.{hint} Delete it and download it again.")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz`` or raw) whose header magic must be ``magic``."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise _bad(path, f"cannot decompress it ({err})") from err
    if len(raw) < 8:
        raise _bad(path, f"only {len(raw)} bytes, shorter than the header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _bad(path, f"magic number {found}, expected {magic}")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _bad(path, "truncated header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise _bad(path, f"{len(raw)} bytes but the header {dims} needs {expected} (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _candidates(data_dir: Path) -> list[Path]:
    return [data_dir, data_dir / "fashion-mnist", data_dir / "FashionMNIST" / "raw"]


def find_fashion_mnist(data_dir: Path) -> Path | None:
    """First folder among ``data_dir``, ``data_dir/fashion-mnist``, ``data_dir/FashionMNIST/raw``
    holding all four files (each either gzipped or already decompressed)."""
    for d in _candidates(Path(data_dir)):
        names = [n for pair in FASHION_FILES.values() for n in pair]
        if all((d / n).is_file() or (d / n[:-3]).is_file() for n in names):
            return d
    return None


def _file(d: Path, name: str) -> Path:
    return d / name if (d / name).is_file() else d / name[:-3]


def load_fashion_mnist(data_dir: Path, download: bool = False) -> dict:
    """``{"train": (x, y), "test": (x, y)}``: x uint8 ``(N, 1, 32, 32)`` (28x28 zero-padded by 2),
    y int64 ``(N,)``."""
    data_dir = Path(data_dir)
    folder = find_fashion_mnist(data_dir)
    if folder is None and download:
        dl.download("fashion-mnist", data_dir)
        folder = find_fashion_mnist(data_dir)
    if folder is None:
        names = ", ".join(n for pair in FASHION_FILES.values() for n in pair)
        where = ", ".join(str(p.resolve()) for p in _candidates(data_dir))
        raise DatasetError(
            f"Fashion-MNIST not found: the files {names} must all be in one of {where}. Copy them "
            f"there (from {dl.RESOURCES['fashion-mnist'].base_url}), or rerun with --download "
            f"(download=True) to fetch them into {(data_dir / 'fashion-mnist').resolve()}.")
    out = {}
    for split, (img_name, lab_name) in FASHION_FILES.items():
        img_path, lab_path = _file(folder, img_name), _file(folder, lab_name)
        x = read_idx(img_path, 2051)
        y = read_idx(lab_path, 2049)
        if x.shape[0] != y.shape[0]:
            raise _bad(lab_path, f"{y.shape[0]} labels for {x.shape[0]} images in {img_path.name}")
        if x.shape[1:] != (28, 28):
            raise _bad(img_path, f"images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
        if y.size and y.max() > 9:
            raise _bad(lab_path, f"label {int(y.max())} outside 0-9")
        padded = np.zeros((x.shape[0], 1, 32, 32), np.uint8)
        padded[:, 0, 2:30, 2:30] = x
        out[split] = (torch.from_numpy(padded), torch.from_numpy(y.astype(np.int64)))
    return out
