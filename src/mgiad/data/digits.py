"""scikit-learn's 8x8 digits as a small offline dataset: 0-255 uint8, bilinear 32x32, fixed split."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from .info import DatasetError

__all__ = ["load_digits_split", "TEST_SIZE"]

TEST_SIZE = 360  # 1797 images -> 1437 train / 360 test


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
        from sklearn.datasets import load_digits
        bunch = load_digits()
    except Exception as err:
        raise DatasetError(f"the 'digits' dataset needs scikit-learn ({err}); install it with "
                           f"`pip install scikit-learn`.") from err
    images = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1) * (255.0 / 16.0)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    x = images.round().clamp_(0, 255).to(torch.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    test = torch.from_numpy(_split(labels, TEST_SIZE))
    y = torch.from_numpy(labels)
    return {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
