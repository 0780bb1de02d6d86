"""The MGIC baseline (Eliasof et al. 2020, "Multigrid-in-Channels"), as the MGiaD paper describes it:
residual blocks whose convolutions are replaced by a V-cycle in channels - grouped 3x3 convolutions,
channel restriction (two channels to one) and prolongation, a fully coupled coarsest level. Unlike
MGiaD there is no weight sharing and no FAS: each block is a plain residual correction.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import ConvBNReLU, Stem, Classifier, check_divisible, check_positive_int, conv
from ..registry import register_model
from .mgiad import channel_levels
from .multigrid import ImageClassifier, init_weights, scale_widths


class ChannelCycle(nn.Module):
    """x -> grouped conv -> [restrict, recurse, prolong and add] -> grouped conv, per channel level."""

    def __init__(self, channels: int, coarse_channels: int, group_size: int):
        super().__init__()
        levels = channel_levels(channels, coarse_channels)
        groups = 1
        if len(levels) > 1 and group_size < channels:
            check_divisible("group_size", channels, group_size, "a channel level")
            groups = channels // group_size
        self.pre = ConvBNReLU(channels, channels, 3, groups=groups)
        self.post = ConvBNReLU(channels, channels, 3, groups=groups, relu=False)
        self.R = self.coarse = self.P = None
        if len(levels) > 1:
            half = levels[1]
            self.R = ConvBNReLU(channels, half, 1, groups=half)
            self.coarse = ChannelCycle(half, coarse_channels, group_size)
            self.P = conv(half, channels, 1, groups=half)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        if self.coarse is not None:
            x = x + self.P(self.coarse(self.R(x)))
        return self.post(x)


class MGICBlock(nn.Module):
    """relu(x + cycle(x)): a ResNet basic block with its convolutions replaced by a channel cycle."""

    def __init__(self, channels: int, coarse_channels: int, group_size: int):
        super().__init__()
        self.cycle = ChannelCycle(channels, coarse_channels, group_size)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.cycle(x))


@register_model("mgic")
class MGIC(ImageClassifier):
    """MGIC network: ``blocks`` MGIC blocks per resolution level; between levels a learnable
    3x3 stride-2 depthwise pooling (channel multiplier ``c_{l+1}/c_l``) with BN and ReLU."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 256), blocks: int = 2,
                 width_mult: float = 1, group_size: int = 8, coarse_channels: int = 64):
        super().__init__(num_classes, in_chans)
        channels = scale_widths(widths, width_mult)
        check_positive_int("blocks", blocks)
        check_positive_int("group_size", group_size)
        check_positive_int("coarse_channels", coarse_channels)
        self.stem = Stem(in_chans, channels[0], stem)
        layers = []
        for l, c in enumerate(channels):
            if l > 0:
                layers.append(ConvBNReLU(channels[l - 1], c, 3, stride=2, groups=channels[l - 1]))
            layers += [MGICBlock(c, coarse_channels, group_size) for _ in range(blocks)]
        self.blocks = nn.Sequential(*layers)
        self.head = Classifier(channels[-1], num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))
