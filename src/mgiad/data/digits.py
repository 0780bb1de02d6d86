"""The 8x8 handwritten digits (the UCI optdigits test set, as scikit-learn bundles it) as a small
offline dataset shipped with the package (``digits.npz``: 1797 images of 0-16 gray levels and their
labels, 45 KB): 0-255 uint8, bilinear 32x32, fixed split. No scikit-learn needed."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .info import DatasetError

__all__ = ["load_digits_split", "TEST_SIZE"]

TEST_SIZE = 360  # 1797 images -> 1437 train / 360 test
DIGITS_FILE = Path(__file__).with_name("digits.npz")
# blake2b (16 bytes) of the images' then the labels' bytes: the file is the one we shipped
DIGITS_DIGEST = "3add1ae1fa53cc89d7599167a31c4e88"


def _split(labels: np.ndarray, test_size: int) -> np.ndarray:
    """Boolean test mask: per class, images ordered by a hash of their index (fixed forever, no RNG
    library involved); the ``test_size`` images with the smallest within-class rank fraction are
    test, so every class gets its proportional share."""
    n = len(labels)
    key = np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "big")
                    for i in range(n)], dtype=np.uint64)
    frac = np.empty(n)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = idx[np.argsort(key[idx], kind="stable")]
        frac[order] = (np.arange(len(idx)) + 0.5) / len(idx)
    test = np.zeros(n, bool)
    test[np.lexsort((np.arange(n), frac))[:test_size]] = True
    return test


def load_digits_split() -> dict:
    """``{"train": (x, y), "test": (x, y)}``: x uint8 ``(N, 1, 32, 32)``, y int64; independent of
    any seed, so every run and every rank sees the same 1437/360 split."""
    try:
        with np.load(DIGITS_FILE) as data:
            raw, stored_labels = data["images"], data["labels"]
        digest = hashlib.blake2b(raw.tobytes() + stored_labels.tobytes(), digest_size=16).hexdigest()
        labels = stored_labels.astype(np.int64)
    except (OSError, KeyError, ValueError, EOFError) as err:
        raise DatasetError(f"the bundled digits file {DIGITS_FILE} cannot be read ({err}); "
                           "reinstall mgiad") from None
    if raw.shape != (1797, 8, 8) or digest != DIGITS_DIGEST:
        raise DatasetError(f"the bundled digits file {DIGITS_FILE} is not the one mgiad ships "
                           f"(shape {raw.shape}, digest {digest}); reinstall mgiad")
    images = torch.as_tensor(raw.astype(np.float32)).unsqueeze(1) * (255.0 / 16.0)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    x = images.round().clamp_(0, 255).to(torch.uint8)
    test = torch.from_numpy(_split(labels, TEST_SIZE))
    y = torch.from_numpy(labels)
    return {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
