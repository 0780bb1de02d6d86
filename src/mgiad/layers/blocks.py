"""Building blocks shared by every architecture, written once.

Vocabulary of the paper (van Betteray, Rottmann, Kahl: "MGiaD: Multigrid in all dimensions"):
``u`` features, ``f`` data, ``A`` feature-to-data map, ``B`` data-to-feature map (smoother),
``R`` restriction of the residual, ``Pi`` FAS restriction of the features, ``P`` prolongation.

Conventions that reproduce the paper's weight counts: no convolution has a bias, and every
convolution is followed by BatchNorm then ReLU except ``A``/``B`` (whose BN+ReLU sit inside the
smoothing step, eq. 5) and the prolongation ``P`` (no BN unless asked for).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dispatch
from .checks import is_tracing
from .conv import conv

__all__ = ["BNReLU", "ConvBNReLU", "Stem", "Classifier", "POOLS"]


class BNReLU(nn.Sequential):
    """relu(bn(x)): the normalisation that follows every convolution (paper, section 4)."""

    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ConvBNReLU(nn.Sequential):
    """conv -> BN -> ReLU (ReLU optional, for ResNet's second convolution)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, relu: bool = True):
        layers = [conv(in_channels, out_channels, kernel_size, stride, groups),
                  nn.BatchNorm2d(out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.recompute = False  # set by the model: recompute="step" stores only the input
        self.use_kernels = False  # set by impl="fast": BN and ReLU in fused passes

    def forward(self, x: Tensor) -> Tensor:
        return dispatch.conv_bn_relu(self, x)

    def reference_forward(self, x: Tensor) -> Tensor:
        """conv, BN, ReLU one after the other (``nn.Sequential``)."""
        return super().forward(x)


class Stem(nn.Module):
    """Maps the image to the data ``f_1`` of the first level and checks the input's shape.

    ``"cifar"``: 3x3 conv, stride 1. ``"imagenet"``: 7x7 conv, stride 2, then 3x3 max-pool, stride 2.
    """

    kinds = ("cifar", "imagenet")

    def __init__(self, in_chans: int, out_channels: int, kind: str = "cifar"):
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"stem must be one of {list(self.kinds)}, got {kind!r}")
        self.in_chans, self.kind = in_chans, kind
        if kind == "cifar":
            self.conv = ConvBNReLU(in_chans, out_channels, 3)
            self.pool = nn.Identity()
        else:
            self.conv = ConvBNReLU(in_chans, out_channels, 7, stride=2)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if not is_tracing() and (x.dim() != 4 or x.shape[1] != self.in_chans):
            raise ValueError(f"expected input of shape (N, {self.in_chans}, H, W) for "
                             f"in_chans={self.in_chans}, got {tuple(x.shape)}")
        return self.pool(self.conv(x))


POOLS = ("avg", "max", "avgmax", "")


class Classifier(nn.Module):
    """Global pooling of ``u`` on the last level, dropout, then a linear layer (timm's head).

    ``global_pool``: ``"avg"`` (the paper's), ``"max"``, ``"avgmax"`` (their mean) or ``""`` (no
    pooling: the head passes the feature map through, so it needs ``num_classes=0``).
    ``num_classes=0``: no linear layer (``fc`` is the identity); the head returns the pooled
    features. ``drop_rate``: dropout on the pooled features, while training.
    """

    def __init__(self, channels: int, num_classes: int, global_pool: str = "avg",
                 drop_rate: float = 0.0):
        super().__init__()
        if global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {list(POOLS)}, got {global_pool!r}")
        if global_pool == "" and num_classes:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0: a classifier "
                             "takes pooled features")
        self.global_pool, self.drop_rate = global_pool, drop_rate
        self.fc = nn.Linear(channels, num_classes) if num_classes else nn.Identity()

    def pool(self, u: Tensor) -> Tensor:
        if self.global_pool == "avg":
            return torch.flatten(F.adaptive_avg_pool2d(u, 1), 1)
        if self.global_pool == "max":
            return torch.flatten(F.adaptive_max_pool2d(u, 1), 1)
        if self.global_pool == "avgmax":
            return torch.flatten(0.5 * (F.adaptive_avg_pool2d(u, 1) + F.adaptive_max_pool2d(u, 1)), 1)
        return u

    def forward(self, u: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pool(u)
        if self.drop_rate:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)
