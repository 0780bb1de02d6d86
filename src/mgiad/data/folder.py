"""Image folder datasets: Tiny ImageNet (decoded once into a cached uint8 array), ImageNet
(streamed: a torch ``Dataset`` decoding and augmenting one image at a time with Pillow) and the
user's own images (``--dataset folder``: ``train/<class>/*`` and ``val/<class>/*``, decoded once
into memory at :data:`FOLDER_SIZE`)."""
from __future__ import annotations

import hashlib
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import download as dl
from .classfolders import FOLDER_HELP, IMAGE_SUFFIXES, scan_class_folders
from .classfolders import images_in as _images_in
from .errors import DatasetError
from ..utils.errors import install_hint

__all__ = ["load_tiny_imagenet", "scan_imagenet", "scan_class_folders", "load_image_folder",
           "ImageFolderDataset", "decode_rgb", "random_resized_crop", "resize_center_crop",
           "FOLDER_SIZE", "FOLDER_HELP"]

_CACHE_VERSION = "1"


def _pil():
    try:
        from PIL import Image
        return Image
    except Exception as err:
        raise DatasetError(f"decoding image folders needs Pillow ({err}); install it: "
                           + install_hint("images", "Pillow") + ".") from err


def decode_rgb(path: Path, size: int | None = None):
    """Decode ``path`` as an RGB PIL image (grayscale/CMYK converted), resized to ``size`` if given."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except Exception as err:
        raise DatasetError(f"cannot decode image {path}: {err}. The file is corrupt; replace it.") from err
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return im


# --------------------------------------------------------------------------- Tiny ImageNet

def _find_tiny(data_dir: Path) -> Path | None:
    for d in (data_dir / "tiny-imagenet-200", data_dir):
        if (d / "wnids.txt").is_file() and (d / "train").is_dir() and (d / "val").is_dir():
            return d
    return None


def _tiny_samples(root: Path) -> tuple[list[str], dict]:
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()]
    classes = sorted(set(wnids))
    index = {w: i for i, w in enumerate(classes)}
    train = []
    for w in classes:
        folder = root / "train" / w / "images"
        if not folder.is_dir():
            raise DatasetError(f"Tiny ImageNet at {root} is incomplete: {folder} is missing.")
        train += [(p, index[w]) for p in _images_in(folder)]
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DatasetError(f"Tiny ImageNet at {root} is incomplete: {ann} is missing.")
    test = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DatasetError(f"{ann} line {n}: expected '<file>\\t<wnid>\\t...' with a wnid from "
                               f"wnids.txt, got {line!r}.")
        test.append((root / "val" / "images" / fields[0], index[fields[1]]))
    return classes, {"train": train, "test": test}


def _fingerprint(root: Path, samples: list) -> str:
    h = hashlib.sha1(_CACHE_VERSION.encode())
    for p, label in samples:
        try:
            st = p.stat()
        except OSError as err:
            raise DatasetError(f"Tiny ImageNet image {p} is missing or unreadable ({err}).") from err
        h.update(f"{p.relative_to(root).as_posix()}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_all(samples: list, size: int, workers: int) -> np.ndarray:
    out = np.empty((len(samples), 3, size, size), np.uint8)

    def work(i):
        out[i] = np.asarray(decode_rgb(samples[i][0], size)).transpose(2, 0, 1)

    with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow releases the GIL while decoding
        list(pool.map(work, range(len(samples))))
    return out


def _cached_images(root: Path, split: str, samples: list, workers: int) -> np.ndarray:
    """Decoded images of one split, from ``root/mgiad-cache/<split>-<fingerprint>.npy`` if valid.

    The fingerprint hashes every source file's path, label, size and mtime, so a changed source
    makes a new cache (stale ones are deleted). If the folder is read-only the cache is skipped.
    """
    cache_dir = root / "mgiad-cache"
    cache = cache_dir / f"{split}-{_fingerprint(root, samples)}.npy"
    if cache.is_file():
        try:
            x = np.load(cache)
            if x.shape == (len(samples), 3, 64, 64) and x.dtype == np.uint8:
                return x
        except Exception:
            pass  # unreadable cache: decode again
    x = _decode_all(samples, 64, workers)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(exist_ok=True)
        for old in cache_dir.glob(f"{split}-*.npy"):
            if old != cache:
                old.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, x)
        os.replace(tmp, cache)
    except OSError:
        pass  # read-only data folder or full disk: work without a cache
    finally:
        tmp.unlink(missing_ok=True)
    return x


def load_tiny_imagenet(data_dir: Path, download: bool = False, workers: int | None = None) -> dict:
    """``{"train": (x, y), "test": (x, y)}`` with x uint8 ``(N, 3, 64, 64)``; test = the labelled val set.

    Uses ``data_dir/tiny-imagenet-200/`` (or ``data_dir`` itself), else extracts
    ``data_dir/tiny-imagenet-200.zip`` once, else downloads it if asked. Class ``i`` is the i-th
    wnid of wnids.txt in sorted order.
    """
    data_dir = Path(data_dir)
    root = _find_tiny(data_dir)
    archive = data_dir / "tiny-imagenet-200.zip"
    if root is None and not archive.is_file() and download:
        dl.download("tiny-imagenet", data_dir)
    if root is None and archive.is_file():
        dl.safe_extract(archive, data_dir, exist_ok=True)
        root = _find_tiny(data_dir)
        if root is None:
            raise DatasetError(f"{data_dir / 'tiny-imagenet-200'} lacks wnids.txt, train/ or val/ after "
                               f"extracting {archive}: remove that folder if it is an old incomplete copy, "
                               f"and check that the archive is the original file "
                               f"(MD5 {dl.MD5['tiny-imagenet-200.zip']}).")
    if root is None:
        raise DatasetError(
            f"Tiny ImageNet not found: looked for {(data_dir / 'tiny-imagenet-200').resolve()}/ (with "
            f"wnids.txt, train/, val/) and {archive.resolve()}. Put the original tiny-imagenet-200.zip "
            f"(MD5 {dl.MD5['tiny-imagenet-200.zip']}, from {dl.RESOURCES['tiny-imagenet'].base_url}"
            f"tiny-imagenet-200.zip) in {data_dir.resolve()}, or rerun with --download (download=True).")
    workers = workers or min(8, os.cpu_count() or 1)
    _, splits = _tiny_samples(root)
    out = {}
    for split, samples in splits.items():
        x = _cached_images(root, split, samples, workers)
        out[split] = (torch.from_numpy(x), torch.tensor([s[1] for s in samples], dtype=torch.int64))
    return out


# --------------------------------------------------------------------------- ImageNet

def scan_imagenet(data_dir: Path) -> tuple[list[str], dict]:
    """Classes (sorted wnid folder names) and ``{"train"|"test": [(path, label), ...]}`` from
    ``data_dir/train/<wnid>/`` and ``data_dir/val/<wnid>/`` (or the same under ``data_dir/imagenet``)."""
    data_dir = Path(data_dir)
    root = next((d for d in (data_dir, data_dir / "imagenet")
                 if (d / "train").is_dir() and (d / "val").is_dir()), None)
    if root is None:
        raise DatasetError(f"ImageNet not found: expected the folders {(data_dir / 'train').resolve()} and "
                           f"{(data_dir / 'val').resolve()}. " + dl.IMAGENET_HELP)
    return scan_class_folders(root, "ImageNet", dl.IMAGENET_HELP)


FOLDER_SIZE = 32  # side of the images of --dataset folder (RGB, resized), as CIFAR's


def load_image_folder(data_dir: Path, workers: int | None = None, log=None) -> dict:
    """``{"train": (x, y), "test": (x, y)}`` of ``data_dir/train`` and ``data_dir/val`` (the test
    split), x uint8 ``(N, 3, FOLDER_SIZE, FOLDER_SIZE)`` (RGB, resized), decoded in threads."""
    _, splits = scan_class_folders(Path(data_dir))
    workers = workers or min(8, os.cpu_count() or 1)
    out = {}
    for split, samples in splits.items():
        if log is not None:
            folder = Path(data_dir) / ("train" if split == "train" else "val")
            log(f"decoding the {len(samples):,} images of {folder} ({FOLDER_SIZE}x{FOLDER_SIZE} RGB)")
        x = _decode_all(samples, FOLDER_SIZE, workers)
        out[split] = (torch.from_numpy(x), torch.tensor([s[1] for s in samples], dtype=torch.int64))
    return out


def random_resized_crop(img, size: int, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crop a random box (area fraction in ``scale``, aspect in ``ratio``, 10 tries, else the
    largest central box with a clamped aspect) and resize it to ``size x size`` (bilinear)."""
    Image = _pil()
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        r = min(max(w / h, ratio[0]), ratio[1])
        cw, ch = (w, round(w / r)) if w / h < r else (round(h * r), h)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))


def resize_center_crop(img, resize: int = 256, size: int = 224):
    """Resize the short side to ``resize`` (bilinear, antialiased) and take the central ``size`` square."""
    Image = _pil()
    w, h = img.size
    s = resize / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return img.crop((x0, y0, x0 + size, y0 + size))


class ImageFolderDataset(Dataset):
    """Decodes ``samples[i] = (path, label)`` with Pillow -> ``(uint8 (3, size, size), label)``.

    Train mode expects indices ``(i, stream_seed)`` (from the loader's sampler): the crop and flip
    of image ``i`` are drawn from ``random.Random(stream_seed, i)``, so they depend only on the
    seed, the epoch and the image, not on workers, ranks or batch order. Test mode takes plain
    ``i`` and resizes the short side to 256 then center-crops 224.
    """

    def __init__(self, samples: list, train: bool, size: int = 224, resize: int = 256):
        self.samples, self.train, self.size, self.resize = samples, train, size, resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        if self.train:
            i, stream = index
            path, label = self.samples[i]
            rng = random.Random((int(stream) << 40) ^ int(i))
            img = random_resized_crop(decode_rgb(path), self.size, rng)
            if rng.random() < 0.5:
                img = img.transpose(_pil().Transpose.FLIP_LEFT_RIGHT)
        else:
            path, label = self.samples[index if isinstance(index, int) else index[0]]
            img = resize_center_crop(decode_rgb(path), self.resize, self.size)
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return x, label
