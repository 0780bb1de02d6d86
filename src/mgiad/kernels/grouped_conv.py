"""Grouped 3x3 convolution (stride 1, padding 1, no bias, in == out channels) with autograd: the C++
kernels where they apply, ``F.conv2d`` elsewhere."""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import runtime

GROUP_SIZES = (2, 4, 8, 16)


def kernel_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the kernels handle this call's shapes, dtype and device (not whether they are built)."""
    return (x.dim() == 4 and weight.dim() == 4 and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and tuple(weight.shape[2:]) == (3, 3) and weight.shape[0] == x.shape[1]
            and weight.shape[1] in GROUP_SIZES and x.shape[1] % weight.shape[1] == 0 and x.numel() > 0)


def _like(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """out (channels_last) in reference's memory format, as F.conv2d would return it."""
    if reference.is_contiguous(memory_format=torch.channels_last):
        return out
    return out.contiguous()


class GroupedConv3x3(torch.autograd.Function):
    """y = conv2d(x, weight, padding=1, groups=C / weight.shape[1]) by the C++ kernels."""

    @staticmethod
    def forward(ctx, x, weight, isa):
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous()
        ctx.save_for_backward(x_nhwc, weight)
        ctx.isa = isa
        ctx.x_channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return _like(torch.ops.mgiad_kernels.conv3x3_forward(x_nhwc, weight, isa), x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_nhwc, weight = ctx.saved_tensors
        grad_nhwc = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.mgiad_kernels.conv3x3_grad_input(grad_nhwc, weight, ctx.isa)
            if not ctx.x_channels_last:
                grad_x = grad_x.contiguous()
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.mgiad_kernels.conv3x3_grad_weight(x_nhwc, grad_nhwc, weight.shape[1], ctx.isa)
        return grad_x, grad_weight, None


def grouped_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])``, by the C++ kernels
    when they apply (CPU float32, weight [C, g, 3, 3] with g in 2, 4, 8, 16) and are available."""
    if kernel_applies(x, weight) and runtime.available():
        return GroupedConv3x3.apply(x, weight, runtime.isa())
    return F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])
