"""Tiny datasets written in the exact original file formats, for tests and offline smoke runs.

Each writer returns the arrays it wrote so a caller can check what a loader reads back.
CIFAR pickles are written as Python 2's cPickle wrote the originals (protocol 2, ``str`` as
byte strings, arrays reconstructed through ``numpy.core.multiarray._reconstruct``); pass
``py2=False`` for what Python 3's ``pickle.dumps(obj, protocol=2)`` makes instead.
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["write_idx_gz", "write_fashion_mnist", "py2_pickle", "write_cifar_tarball",
           "write_tiny_imagenet_zip", "write_imagenet_folders"]


def write_idx_gz(path: Path, array: np.ndarray, magic: int) -> Path:
    """Write a uint8 ``array`` as a gzipped IDX file (big-endian header: magic, then each dim)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return Path(path)


def write_fashion_mnist(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """The four Fashion-MNIST ``.gz`` files with random 28x28 images; returns ``{split: (x, y)}``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x, 2051)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y, 2049)
        out[split] = (x, y)
    return out


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` and ASCII ``str`` as Python 2 byte strings."""

    def _save_py2_str(self, obj):
        data = obj.encode("ascii") if isinstance(obj, str) else obj
        n = len(data)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + data)
        self.memoize(obj)

    def _save_str(self, obj):
        if obj.isascii():
            self._save_py2_str(obj)
        else:
            pickle._Pickler.save_str(self, obj)

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_str


def py2_pickle(obj) -> bytes:
    """``obj`` pickled the way Python 2's cPickle (protocol 2) wrote the CIFAR files."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))


def write_cifar_tarball(path: Path, name: str = "cifar10", n_per_batch: int = 4, n_test: int = 6,
                        seed: int = 0, py2: bool = True) -> dict:
    """``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` with ``n_per_batch`` images in each
    training batch; returns ``{split: (x uint8 (N, 3, 32, 32) RGB, y int64)}`` as written."""
    rng = np.random.default_rng(seed)
    c10 = name == "cifar10"
    folder, key, classes = ("cifar-10-batches-py", "labels", 10) if c10 else ("cifar-100-python", "fine_labels", 100)
    batches = [f"data_batch_{i}" for i in range(1, 6)] if c10 else ["train"]
    dumps = py2_pickle if py2 else (lambda o: pickle.dumps(o, protocol=2))
    files, out = {}, {"train": ([], []), "test": ([], [])}
    for split, fname, n in [("train", b, n_per_batch) for b in batches] + [("test", "test_batch" if c10 else "test", n_test)]:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, classes, n).tolist()
        d = {b"batch_label": b"batch " + fname.encode(), b"data": x.reshape(n, 3072),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)], key.encode(): y}
        if not c10:
            d[b"coarse_labels"] = [v // 5 for v in y]
        files[fname] = dumps(d)
        out[split][0].append(x)
        out[split][1].append(np.asarray(y, np.int64))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072} if c10 else \
        {b"fine_label_names": [f"f{i}".encode() for i in range(100)], b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}
    files["batches.meta" if c10 else "meta"] = dumps(meta)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, folder, None)
        for fname, data in files.items():
            _add(tf, f"{folder}/{fname}", data)
    return {s: (np.concatenate(v[0]), np.concatenate(v[1])) for s, v in out.items()}


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tiny_imagenet_zip(path: Path, wnids=("n02", "n01", "n03"), n_train: int = 2, n_val: int = 2,
                            seed: int = 0) -> dict:
    """``tiny-imagenet-200.zip`` with 64x64 JPEGs (one grayscale); returns ``{split: [(member, wnid)]}``."""
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": []}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        root = "tiny-imagenet-200/"
        zf.writestr(root, b"")
        zf.writestr(root + "wnids.txt", "".join(w + "\n" for w in wnids))
        zf.writestr(root + "words.txt", "".join(f"{w}\tthing {w}\n" for w in wnids))
        for w in wnids:
            zf.writestr(f"{root}train/{w}/{w}_boxes.txt", "")
            for i in range(n_train):
                member = f"{root}train/{w}/images/{w}_{i}.JPEG"
                zf.writestr(member, _jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
                out["train"].append((member, w))
        lines = []
        for i in range(n_val * len(wnids)):
            w = wnids[i % len(wnids)]
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            if i == 0:
                img = img[..., 0]  # Tiny ImageNet has some grayscale JPEGs
            member = f"{root}val/images/val_{i}.JPEG"
            zf.writestr(member, _jpeg(img))
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n")
            out["test"].append((member, w))
        zf.writestr(root + "val/val_annotations.txt", "".join(lines))
        zf.writestr(root + "test/images/test_0.JPEG", _jpeg(np.zeros((64, 64, 3), np.uint8)))
    return out


def write_imagenet_folders(root: Path, wnids=("n01440764", "n01443537"), n_train: int = 3, n_val: int = 2,
                           size=(80, 60), seed: int = 0) -> dict:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``; returns ``{split: [(path, wnid)]}``."""
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": []}
    for split, sub, n in (("train", "train", n_train), ("test", "val", n_val)):
        for w in wnids:
            folder = Path(root) / sub / w
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                p = folder / f"{w}_{i}.JPEG"
                p.write_bytes(_jpeg(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
                out[split].append((p, w))
    return out
