"""ResNet baselines of the paper: ResNet18 (64-512 channels, 2 blocks per level) and ResNet20
(16-64 channels, 3 blocks per level), with 1x1 conv + BN projection shortcuts."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import Classifier, ConvBNReLU, Stem, check_positive_int
from ..registry import register_model
from .multigrid import ImageClassifier, init_weights, scale_widths


class BasicBlock(nn.Module):
    """relu(x' + bn(conv(relu(bn(conv(x)))))) with x' = x, or a 1x1 conv + BN projection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, out_channels, 3, stride)
        self.conv2 = ConvBNReLU(out_channels, out_channels, 3, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else
                         ConvBNReLU(in_channels, out_channels, 1, stride, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(ImageClassifier):
    """Stem, ``blocks[l]`` basic blocks per resolution level (stride 2 entering levels > 1)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 width_mult: float = 1):
        super().__init__(num_classes, in_chans)
        channels = scale_widths(widths, width_mult)
        if len(blocks) != len(channels):
            raise ValueError(f"blocks has {len(blocks)} entries for {len(channels)} levels")
        self.stem = Stem(in_chans, channels[0], stem)
        layers, c_in = [], channels[0]
        for l, (c, n) in enumerate(zip(channels, blocks)):
            for i in range(check_positive_int("blocks", n)):
                layers.append(BasicBlock(c_in, c, stride=2 if l > 0 and i == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*layers)
        self.head = Classifier(channels[-1], num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
             width_mult: float = 1) -> ResNet:
    """ResNet18: widths 64, 128, 256, 512, two basic blocks per level (11.17M weights on CIFAR-10)."""
    return ResNet(num_classes, in_chans, stem, (64, 128, 256, 512), (2, 2, 2, 2), width_mult)


@register_model("resnet20")
def resnet20(num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
             width_mult: float = 1) -> ResNet:
    """ResNet20: widths 16, 32, 64, three basic blocks per level (0.27M weights on CIFAR-10)."""
    return ResNet(num_classes, in_chans, stem, (16, 32, 64), (3, 3, 3), width_mult)
