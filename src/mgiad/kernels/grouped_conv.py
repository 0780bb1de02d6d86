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
    if kernel_applies(x, weight) and not plain_pytorch_wanted() and runtime.available():
        return GroupedConv3x3.apply(x, weight, runtime.isa())
    return F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])


def plain_pytorch_wanted() -> bool:
    """Tracing, ``torch.compile``, autocast or a dispatch mode (FLOP counters, memory trackers,
    fake tensors) is active: they should see ``aten.convolution``, not our operators."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    return (torch.jit.is_tracing() or torch.compiler.is_compiling()
            or torch.is_autocast_enabled("cpu") or _get_current_dispatch_mode() is not None)


def _takes(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups) -> bool:
    """A call of the ``F.conv2d`` signature that the kernels compute: 3x3, stride 1, padding 1."""
    return (tuple(stride) == (1, 1) and tuple(padding) == (1, 1) and tuple(dilation) == (1, 1)
            and groups >= 1 and kernel_applies(x, weight) and groups == x.shape[1] // weight.shape[1]
            and not plain_pytorch_wanted() and runtime.available())


def conv2d(x, weight, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)`` without autograd (inside an
    autograd function's forward): the kernels where they apply."""
    if _takes(x, weight, stride, padding, dilation, groups):
        out = torch.ops.mgiad_kernels.conv3x3_forward(
            x.contiguous(memory_format=torch.channels_last), weight.contiguous(), runtime.isa())
        return _like(out, x)
    return F.conv2d(x, weight, None, stride, padding, dilation, groups)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, output_mask):
    """``(grad_x, grad_weight)`` of ``conv2d`` (``aten.convolution_backward`` without bias):
    the kernels where they apply; ``output_mask`` says which of the two are wanted."""
    if not _takes(x, weight, stride, padding, dilation, groups):
        g_x, g_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
            [output_mask[0], output_mask[1], False])
        return g_x, g_w
    isa = runtime.isa()
    grad_nhwc = grad.contiguous(memory_format=torch.channels_last)
    g_x = g_w = None
    if output_mask[0]:
        g_x = _like(torch.ops.mgiad_kernels.conv3x3_grad_input(grad_nhwc, weight.contiguous(), isa), x)
    if output_mask[1]:
        g_w = torch.ops.mgiad_kernels.conv3x3_grad_weight(
            x.contiguous(memory_format=torch.channels_last), grad_nhwc, weight.shape[1], isa)
    return g_x, g_w
