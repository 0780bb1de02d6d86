"""ResNet baselines of the paper: ResNet18 (64-512 channels, 2 blocks per level) and ResNet20
(16-64 channels, 3 blocks per level; He et al. 2016, section 4.2).

Shortcuts that change shape (He et al., section 3.3): option ``"A"`` is parameter-free (stride-2
subsampling, the new channels zero), option ``"B"`` a 1x1 convolution + BN projection. ResNet20
uses ``"A"`` (269,722 weights on CIFAR-10, the paper's 270k), ResNet18 ``"B"`` (11.17M).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvBNReLU, Stem, check_positive_int, drop_path
from ._registry import register_model
from .base import ImageClassifier
from .multigrid import init_weights, scale_widths

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with ``out - in`` zero channels appended; no weights."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = out_channels - in_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x


class BasicBlock(nn.Module):
    """relu(x' + bn(conv(relu(bn(conv(x)))))) with x' = x, or the shortcut of option A or B when
    the shape changes. ``groups`` makes both 3x3 convolutions grouped (MGIC's smoothing block).
    ``drop_path`` (set by the model's ``drop_path_rate``): stochastic depth of the residual branch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1,
                 shortcut: str = "B"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {list(SHORTCUTS)}, got {shortcut!r}")
        self.conv1 = ConvBNReLU(in_channels, out_channels, 3, stride, groups=groups)
        self.conv2 = ConvBNReLU(out_channels, out_channels, 3, groups=groups, relu=False)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            if out_channels < in_channels:
                raise ValueError(f"shortcut 'A' cannot reduce {in_channels} to {out_channels} "
                                 "channels; use shortcut='B'")
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = ConvBNReLU(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.drop_path = 0.0

    def forward(self, x: Tensor) -> Tensor:
        branch = drop_path(self.conv2(self.conv1(x)), self.drop_path, self.training)
        return self.relu(branch + self.shortcut(x))


class ResNet(ImageClassifier):
    """Stem, ``blocks[l]`` basic blocks per resolution level (stride 2 entering levels > 1).
    ``drop_path_rate`` spreads stochastic depth over the blocks' residual branches; the features
    of level ``l`` (``feature_info``) are the output of its last block."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 width_mult: float = 1, shortcut: str = "B", global_pool: str = "avg",
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__(num_classes, in_chans, global_pool, drop_rate)
        channels = scale_widths(widths, width_mult)
        if len(blocks) != len(channels):
            raise ValueError(f"blocks has {len(blocks)} entries for {len(channels)} levels")
        self.stem = Stem(in_chans, channels[0], stem)
        layers, c_in, self.stage_ends = [], channels[0], []
        for l, (c, n) in enumerate(zip(channels, blocks)):
            for i in range(check_positive_int("blocks", n)):
                layers.append(BasicBlock(c_in, c, stride=2 if l > 0 and i == 0 else 1,
                                         shortcut=shortcut))
                c_in = c
            self.stage_ends.append(len(layers) - 1)
        self.blocks = nn.Sequential(*layers)
        self.init_head(channels, [f"blocks.{i}" for i in self.stage_ends])
        init_weights(self)
        self.set_drop_path(layers, drop_path_rate)


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
             width_mult: float = 1, shortcut: str = "B", global_pool: str = "avg",
             drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> ResNet:
    """ResNet18: widths 64, 128, 256, 512, two basic blocks per level, projection shortcuts
    (``shortcut="B"``; 11.17M weights on CIFAR-10)."""
    return ResNet(num_classes, in_chans, stem, (64, 128, 256, 512), (2, 2, 2, 2), width_mult,
                  shortcut, global_pool, drop_rate, drop_path_rate)


@register_model("resnet20")
def resnet20(num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
             width_mult: float = 1, shortcut: str = "A", global_pool: str = "avg",
             drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> ResNet:
    """ResNet20: widths 16, 32, 64, three basic blocks per level, parameter-free shortcuts
    (``shortcut="A"``; 269,722 weights on CIFAR-10; ``"B"``: 272,474)."""
    return ResNet(num_classes, in_chans, stem, (16, 32, 64), (3, 3, 3), width_mult, shortcut,
                  global_pool, drop_rate, drop_path_rate)
