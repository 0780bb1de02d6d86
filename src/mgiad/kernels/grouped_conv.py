"""Grouped 3x3 convolution (stride 1, padding 1, no bias, in == out channels) with autograd: the C++
kernels where they apply, ``F.conv2d`` elsewhere."""
import torch
import torch.nn.functional as F

from . import runtime
from .autograd import ConvKernels, KernelConv, as_pair, may_run, operators

GROUP_SIZES = (2, 4, 8, 16)


def kernel_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the kernels handle this call's shapes, dtype and device (not whether they are built)."""
    return (x.dim() == 4 and weight.dim() == 4 and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and tuple(weight.shape[2:]) == (3, 3) and weight.shape[0] == x.shape[1]
            and weight.shape[1] in GROUP_SIZES and x.shape[1] % weight.shape[1] == 0 and x.numel() > 0)


GROUPED_3X3 = ConvKernels(
    forward=lambda x, w, isa: operators().conv3x3_forward(x, w, isa),
    grad_input=lambda g, w, input_shape, isa: operators().conv3x3_grad_input(g, w, isa),
    grad_weight=lambda x, g, w, isa: operators().conv3x3_grad_weight(x, g, w.shape[1], isa),
    epilogue=lambda x, w, *epilogue: operators().conv3x3_epilogue(x, w, *epilogue))


def takes(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups) -> bool:
    """A call of the ``F.conv2d`` signature that the kernels compute: 3x3, stride 1, padding 1."""
    return (as_pair(stride) == (1, 1) and as_pair(padding) == (1, 1) and as_pair(dilation) == (1, 1)
            and groups >= 1 and kernel_applies(x, weight) and groups == x.shape[1] // weight.shape[1])


def grouped_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])``, by the C++ kernels
    when they apply (CPU float32, weight [C, g, 3, 3] with g in 2, 4, 8, 16) and are available."""
    if kernel_applies(x, weight) and may_run():
        return KernelConv.apply(x, weight, GROUPED_3X3, runtime.isa())
    return F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])
