"""Batched augmentation on the training device (whole uint8 batches, one CPU generator).

Random parameters are drawn on the CPU from a ``torch.Generator`` (so a given seed gives the same
augmentation on every device) and the pixels are moved on the batch's own device. Each transform
has ``sample(n, generator)`` -> params, ``apply(x, **params)`` and ``__call__(x, generator)``.
Inputs and outputs are on the 0-255 scale; :class:`Normalize` maps them to float, normalised.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["Normalize", "PadCropFlip", "RandomResizedCropFlip", "train_augment"]


class Normalize:
    """``(x / 255 - mean) / std`` as float32 for uint8 (or 0-255 float) batches ``(N, C, H, W)``."""

    def __init__(self, mean, std, device="cpu"):
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(device)
        self.shift = (mean_t / std_t).view(1, -1, 1, 1).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mul(self.scale).sub_(self.shift)


class PadCropFlip:
    """Random ``H x W`` crop of the image zero-padded by ``pad`` pixels (the CIFAR recipe), then a
    horizontal flip with probability 1/2 if ``flip``. Vectorised: one gather for the whole batch.

    Use ``flip=False`` for digits: a mirrored 2, 3, 5, 7 or 9 is no longer that digit.
    Fashion-MNIST and CIFAR are flip-invariant.
    """

    def __init__(self, pad: int = 4, flip: bool = True):
        self.pad, self.flip = int(pad), bool(flip)

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict:
        oy = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return {"oy": oy, "ox": ox, "flip": flip}

    def apply(self, x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Output pixel ``(i, j)`` of image ``b`` is padded pixel ``(oy[b] + i, ox[b] + j)`` (mirrored
        in ``j`` where ``flip[b]``); offset ``pad`` in both is the identity."""
        n, c, h, w = x.shape
        dev = x.device
        p = self.pad
        xp = F.pad(x, (p, p, p, p)) if p else x
        rows = oy.to(dev).view(n, 1) + torch.arange(h, device=dev)
        cols = ox.to(dev).view(n, 1) + torch.arange(w, device=dev)
        cols = torch.where(flip.to(dev).view(n, 1), cols.flip(1), cols)
        b = torch.arange(n, device=dev).view(n, 1, 1, 1)
        ch = torch.arange(c, device=dev).view(1, c, 1, 1)
        return xp[b, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, **self.sample(x.shape[0], generator))


class RandomResizedCropFlip:
    """Random-resized crop (area ``scale``, aspect ``ratio``, as in the ImageNet recipe) to
    ``size x size`` plus a horizontal flip with probability 1/2, for a whole batch at once with
    per-sample affine grids and ``F.grid_sample`` (bilinear). Returns float on the 0-255 scale.

    Like torchvision, 10 (area, ratio) draws are tried per image and the first that fits is used;
    if none fits the whole image is taken. Crops are continuous (sub-pixel) boxes. There is no
    antialiasing, which is exact enough when crops are not larger than the output (Tiny ImageNet:
    64x64 images, 64x64 output, so crops are only ever upsampled).
    """

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True, tries: int = 10):
        self.size, self.scale, self.ratio, self.flip, self.tries = int(size), scale, ratio, flip, tries

    def sample(self, n: int, h: int, w: int, generator: torch.Generator | None = None) -> dict:
        """Boxes in pixel-edge coordinates: ``x0, y0, bw, bh`` (floats) and ``flip`` (bool)."""
        area = torch.empty(n, self.tries).uniform_(*self.scale, generator=generator) * (h * w)
        logr = torch.empty(n, self.tries).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]),
                                                   generator=generator)
        bw, bh = (area * logr.exp()).sqrt(), (area / logr.exp()).sqrt()
        ok = (bw <= w) & (bh <= h)
        first = ok.to(torch.uint8).argmax(1, keepdim=True)
        any_ok = ok.any(1)
        bw = torch.where(any_ok, bw.gather(1, first).squeeze(1), torch.tensor(float(w)))
        bh = torch.where(any_ok, bh.gather(1, first).squeeze(1), torch.tensor(float(h)))
        x0 = torch.rand(n, generator=generator) * (w - bw)
        y0 = torch.rand(n, generator=generator) * (h - bh)
        flip = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return {"x0": x0, "y0": y0, "bw": bw, "bh": bh, "flip": flip}

    def apply(self, x: torch.Tensor, x0, y0, bw, bh, flip) -> torch.Tensor:
        n, c, h, w = x.shape
        sx = bw / w * torch.where(flip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * x0 + bw) / w - 1
        theta[:, 1, 1], theta[:, 1, 2] = bh / h, (2 * y0 + bh) / h - 1
        theta = theta.to(x.device)
        grid = F.affine_grid(theta, [n, c, self.size, self.size], align_corners=False)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, **self.sample(x.shape[0], x.shape[2], x.shape[3], generator))


def train_augment(name: str):
    """The training augmentation of an in-memory dataset (``None`` for ImageNet: done per image)."""
    if name == "digits":
        return PadCropFlip(4, flip=False)
    if name in ("fashion-mnist", "cifar10", "cifar100", "folder"):
        return PadCropFlip(4, flip=True)
    if name == "tiny-imagenet":
        return RandomResizedCropFlip(64)
    return None
