"""What every convolution kernel shares: its three C++ operators behind one signature
(:class:`ConvKernels`), and one autograd function over them (:class:`KernelConv`). Inputs go to the
kernels as NHWC; outputs come back in the input's memory format, as ``F.conv2d`` returns them."""
from typing import Callable, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from . import runtime


class ConvKernels(NamedTuple):
    """One kind of convolution's C++ operators (NHWC tensors, ``isa`` from :mod:`.runtime`)."""
    forward: Callable      # (x_nhwc, weight, isa) -> y_nhwc
    grad_input: Callable   # (grad_nhwc, weight, input_shape, isa) -> grad_x_nhwc
    grad_weight: Callable  # (x_nhwc, grad_nhwc, weight, isa) -> grad_weight
    # inference: (x_nhwc, weight, alpha, beta, add, add_scale, relu, residual, isa) -> y_nhwc
    # with the epilogue of mgiad.kernels.epilogue
    epilogue: Callable


def operators():
    """``torch.ops.mgiad_kernels``, looked up when called (the library loads on first use)."""
    return torch.ops.mgiad_kernels


def plain_pytorch_wanted() -> bool:
    """Tracing, ``torch.compile``, autocast or a dispatch mode (FLOP counters, memory trackers,
    fake tensors) is active: they should see ``aten.convolution``, not our operators."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    tracing = torch.jit.is_tracing() and not runtime.tracing_for_kernels()
    return (tracing or torch.compiler.is_compiling()
            or torch.is_autocast_enabled("cpu") or _get_current_dispatch_mode() is not None)


def may_run() -> bool:
    """The kernels may run this call now: they are built and enabled here, and nothing wants
    plain PyTorch (:func:`plain_pytorch_wanted`)."""
    return not plain_pytorch_wanted() and runtime.available()


def like(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """out (channels_last) in reference's memory format, as F.conv2d would return it."""
    if reference.is_contiguous(memory_format=torch.channels_last):
        return out
    return out.contiguous()


def as_pair(value) -> tuple:
    """A conv argument (stride, padding, dilation) as a pair, as ``F.conv2d`` reads an int."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def forward(ops: ConvKernels, x, weight, isa):
    """``y = conv(x, weight)`` without autograd."""
    return like(ops.forward(_nhwc(x), weight.contiguous(), isa), x)


def backward(ops: ConvKernels, grad, x, weight, output_mask, isa):
    """``(grad_x, grad_weight)`` without autograd, each None unless ``output_mask`` wants it."""
    grad_nhwc, weight = _nhwc(grad), weight.contiguous()
    g_x = like(ops.grad_input(grad_nhwc, weight, x.shape, isa), x) if output_mask[0] else None
    g_w = ops.grad_weight(_nhwc(x), grad_nhwc, weight, isa) if output_mask[1] else None
    return g_x, g_w


class KernelConv(torch.autograd.Function):
    """``y = conv(x, weight)`` by one kind's kernels, with autograd; saves x as NHWC."""

    @staticmethod
    def forward(ctx, x, weight, ops, isa):
        x_nhwc, weight = _nhwc(x), weight.contiguous()
        ctx.save_for_backward(x_nhwc, weight)
        ctx.ops, ctx.isa = ops, isa
        ctx.x_channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return like(ops.forward(x_nhwc, weight, isa), x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_nhwc, weight = ctx.saved_tensors
        g_x, g_w = backward(ctx.ops, grad_out, x_nhwc, weight, ctx.needs_input_grad[:2], ctx.isa)
        if g_x is not None and not ctx.x_channels_last:
            g_x = g_x.contiguous()
        return g_x, g_w, None, None
