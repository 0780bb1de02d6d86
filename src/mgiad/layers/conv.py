"""The convolutions of every layer: bias-free, 'same'-padded; the grouped 3x3 smoothers and the
transfers are :class:`KernelConv2d` subclasses, which :mod:`.dispatch` may run on
:mod:`mgiad.kernels`' C++ kernels (same map, weights and state_dict keys)."""
from __future__ import annotations

from torch import Tensor, nn

from .. import kernels
from . import dispatch, inference

__all__ = ["conv", "is_transfer", "KernelConv2d", "GroupedConv3x3", "TransferConv",
           "InferenceConv2d", "use_inference_convs"]


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
         groups: int = 1) -> nn.Conv2d:
    """A bias-free 'same'-padded convolution: the linear map of every layer in the paper."""
    grouped_3x3 = (kernel_size == 3 and stride == 1 and in_channels == out_channels
                   and (groups > 1 or in_channels in (8, 16)))  # dense 8, 16: the kernels' one group
    cls = (GroupedConv3x3 if grouped_3x3 else
           TransferConv if is_transfer(in_channels, out_channels, kernel_size, stride, groups) else nn.Conv2d)
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
               groups=groups, bias=False)


def is_transfer(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int) -> bool:
    """A transfer that :mod:`mgiad.kernels` computes: depthwise 3x3 stride 2 with channel multiplier
    1 or 2 (``R``, ``Pi``), or 1x1 with 2 -> 1 or 1 -> 2 channels per group (``R-hat``, ``Pi-hat``,
    ``P-hat``)."""
    if kernel_size == 3 and stride == 2:
        return groups == in_channels and out_channels in (in_channels, 2 * in_channels)
    return (kernel_size == 1 and stride == 1 and in_channels % groups == 0 and out_channels % groups == 0
            and (in_channels // groups, out_channels // groups) in ((2, 1), (1, 2)))


class KernelConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that runs on :mod:`mgiad.kernels`' C++ kernels when ``use_kernels`` is set
    (``impl="fast"`` sets it) and they apply: same map, weights and state_dict keys."""

    use_kernels = False
    gpu_transfer = False  # transfers: on a GPU by mgiad.kernels.gpu's choice of implementation
    computes_conv2d = True  # the fast path and BN folding treat it as nn.Conv2d

    def forward(self, x: Tensor) -> Tensor:
        return dispatch.conv2d(self, x)

    def reference_forward(self, x: Tensor) -> Tensor:
        """``nn.Conv2d``'s computation (PyTorch's convolution)."""
        return super().forward(x)

    def kernel_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class GroupedConv3x3(KernelConv2d):
    """A grouped 3x3 convolution (``A-hat``, ``B-hat``; also a dense one of 8 or 16 channels, the
    kernels' group size with one group) on the grouped 3x3 kernels."""

    def kernel_forward(self, x: Tensor) -> Tensor:
        return kernels.grouped_conv3x3(x, self.weight)


class TransferConv(KernelConv2d):
    """A transfer (:func:`is_transfer`): on the CPU on the transfer kernels, on a GPU by the
    implementation :mod:`mgiad.kernels.gpu` chooses."""

    gpu_transfer = True

    def kernel_forward(self, x: Tensor) -> Tensor:
        return kernels.transfer_conv(x, self.weight, self.stride, self.padding, self.dilation, self.groups)


class InferenceConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose forward is :func:`mgiad.kernels.epilogue.conv2d` (the bias as its
    epilogue): the kernels' convolution where one takes the call (a dense 3x3 one by
    :mod:`mgiad.kernels.winograd`), PyTorch's otherwise, and PyTorch's whenever a gradient is wanted."""

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return inference.conv2d(self, x)


def use_inference_convs(model: nn.Module) -> nn.Module:
    """Makes every convolution of ``model`` (in place: a BatchNorm-folded copy) that would run on
    PyTorch an :class:`InferenceConv2d`, the same module with the same parameters (shared modules
    stay shared): plain ``nn.Conv2d`` and the kernels' layers with the kernels off (``impl=
    "reference"``, the baselines' default). Layers on the kernels keep their own dispatch."""
    for module in model.modules():
        if type(module) is nn.Conv2d or (isinstance(module, KernelConv2d) and not module.use_kernels):
            module.__class__ = InferenceConv2d
    return model
