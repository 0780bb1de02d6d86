"""``F.conv2d`` and its backward without autograd, for the fast path's own autograd functions
(:mod:`mgiad.layers.fast`, :mod:`mgiad.layers.recompute`): whichever kernel computes the call (grouped 3x3 or a
transfer), PyTorch where none does, where none is built, or where PyTorch should see the call."""
import torch
import torch.nn.functional as F

from . import autograd, grouped_conv, runtime, transfers


def kernels_for(x, weight, stride, padding, dilation, groups):
    """The :class:`~.autograd.ConvKernels` that should run this call now, or None."""
    if not autograd.may_run():
        return None
    if grouped_conv.takes(x, weight, stride, padding, dilation, groups):
        return grouped_conv.GROUPED_3X3
    kind = transfers.transfer_kind(x, weight, stride, padding, dilation, groups)
    return None if kind is None else transfers.KERNELS[kind]


def conv2d(x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)``."""
    ops = kernels_for(x, weight, stride, padding, dilation, groups)
    if ops is None:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return autograd.forward(ops, x, weight, runtime.isa())


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, output_mask):
    """``(grad_x, grad_weight)`` of :func:`conv2d` (``aten.convolution_backward`` without bias), the
    two wanted as ``output_mask`` says (the other is None)."""
    ops = kernels_for(x, weight, stride, padding, dilation, groups)
    if ops is None:
        g_x, g_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
            [output_mask[0], output_mask[1], False])
        return g_x, g_w
    return autograd.backward(ops, grad, x, weight, output_mask, runtime.isa())
