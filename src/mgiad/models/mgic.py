"""The MGIC baseline (Eliasof et al. 2020, "Multigrid-in-Channels"), as its authors' code builds it
(``ResNetMGGroup`` with ``MgBlockDwGroup``, basic blocks, grouped point-wise transfers), so that its
weight count equals theirs for the same widths, blocks, group size and threshold.

A block is a V-cycle in channels with nothing computed on the way down: level ``k`` keeps ``x_k``
and restricts it with a grouped 1x1 ``R`` (no BN, no ReLU). The coarsest level is a dense ResNet
basic block; on the way up each level corrects ``x_k`` FAS-like and smooths the result with a
basic block of two grouped 3x3 convolutions:

    x_{k+1} = R(x_k)          (down, to the coarsest level, which becomes basic_block(x_K))
    z_k = x_k + bn(P(x_{k+1}' - x_{k+1}))          x_k' = basic_block_k(z_k)      (up)

Unlike MGiaD there is no weight sharing and no resolution FAS.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import ConvBNReLU, Stem, check_divisible, check_positive_int, conv
from ._registry import register_model
from .base import ImageClassifier
from .multigrid import init_weights, scale_widths
from .resnet import BasicBlock


def mgic_levels(channels: int, threshold: int) -> list[int]:
    """Channel levels of one block: halve at least once, and again while the half is still
    ``>= threshold`` (the reference's ``mgFcChannel``); so 128 and threshold 64 give 128, 64, 32."""
    levels = [channels]
    while True:
        if levels[-1] % 2 or levels[-1] < 2:
            raise ValueError(f"MGIC channel level of width {levels[-1]} cannot be halved; choose "
                             f"widths and coarse_channels (threshold {threshold}) so that every "
                             "restricted level is even")
        levels.append(levels[-1] // 2)
        if levels[-1] < threshold:
            return levels


def channel_groups(channels: int, group_size: int) -> int:
    """Groups of ``group_size`` channels; a level narrower than a group is fully coupled."""
    if channels <= group_size:
        return 1
    check_divisible("group_size", channels, group_size, "an MGIC channel level")
    return channels // group_size


class MGICCycle(nn.Module):
    """The part of an MGIC block on channel level ``k`` (``channels`` wide) and below it."""

    def __init__(self, channels: int, threshold: int, group_size: int, levels: list[int] | None = None):
        super().__init__()
        levels = mgic_levels(channels, threshold) if levels is None else levels
        coarse, groups = levels[1], channel_groups(channels, group_size)
        check_divisible("group_size", coarse, groups, f"the {coarse}-channel restriction "
                        f"(groups of {channels}/{groups} channels must halve evenly)")
        self.R = conv(channels, coarse, 1, groups=groups)
        self.coarse = (BasicBlock(coarse, coarse) if len(levels) == 2 else
                       MGICCycle(coarse, threshold, group_size, levels[1:]))
        self.P = ConvBNReLU(coarse, channels, 1, groups=groups, relu=False)  # bn(P(.))
        self.smooth = BasicBlock(channels, channels, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        x_coarse = self.R(x)
        correction = self.coarse(x_coarse) - x_coarse
        return self.smooth(x + self.P(correction))


@register_model("mgic")
class MGIC(ImageClassifier):
    """MGIC network: ``blocks`` MGIC blocks per resolution level; entering a level > 1, a 3x3
    stride-2 depthwise convolution (channel multiplier ``c_{l+1}/c_l``) with BN and ReLU.

    Args:
        widths: channels per resolution level (the reference's ``channelArray``).
        blocks: MGIC blocks per level, an int or one per level (``RepetitionArray``).
        group_size: channels per group of every grouped convolution (``numberOfFixGroup``).
        coarse_channels: the reference's threshold ``mgFcChannel``: a block halves its channels at
            least once and again while the half is ``>= coarse_channels``, so its dense coarsest
            level has ``coarse_channels / 2`` to ``coarse_channels - 1`` channels (64 -> 32). Not
            MGiaD's ``c_K``, which is the coarsest width itself.
        global_pool, drop_rate, drop_path_rate: timm's head pooling, dropout before the
            classifier, stochastic depth of every basic block's residual branch (in module order)
            (:mod:`mgiad.models.base`). The features of level ``l`` are its last block's output.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 256), blocks: int | Sequence[int] = 2,
                 width_mult: float = 1, group_size: int = 8, coarse_channels: int = 64,
                 global_pool: str = "avg", drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__(num_classes, in_chans, global_pool, drop_rate)
        channels = scale_widths(widths, width_mult)
        per_level = [blocks] * len(channels) if isinstance(blocks, int) else list(blocks)
        if len(per_level) != len(channels):
            raise ValueError(f"blocks has {len(per_level)} entries for {len(channels)} levels")
        check_positive_int("group_size", group_size)
        check_positive_int("coarse_channels", coarse_channels)
        self.stem = Stem(in_chans, channels[0], stem)
        layers, self.stage_ends = [], []
        for l, (c, n) in enumerate(zip(channels, per_level)):
            check_positive_int("blocks", n)
            if l > 0:
                check_divisible("the width", c, channels[l - 1], "the next level (depthwise "
                                "transition with a channel multiplier)")
                layers.append(ConvBNReLU(channels[l - 1], c, 3, stride=2, groups=channels[l - 1]))
            layers += [MGICCycle(c, coarse_channels, group_size) for _ in range(n)]
            self.stage_ends.append(len(layers) - 1)
        self.blocks = nn.Sequential(*layers)
        self.init_head(channels, [f"blocks.{i}" for i in self.stage_ends])
        init_weights(self)
        self.set_drop_path([m for m in self.modules() if isinstance(m, BasicBlock)],
                           drop_path_rate)
