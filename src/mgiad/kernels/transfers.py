"""The multigrid transfers with autograd: depthwise 3x3 convolutions with stride 2 and padding 1
(channel multiplier 1 or 2; the poolings ``R``, ``Pi`` in resolution) and 1x1 grouped convolutions
with 2 -> 1 or 1 -> 2 channels per group (``R-hat``, ``Pi-hat``, ``P-hat``). The C++ kernels run
them where they apply, ``F.conv2d`` elsewhere. No bias."""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import grouped_conv, runtime
from .grouped_conv import _like, plain_pytorch_wanted

DEPTHWISE, PAIRS = "depthwise", "pairs"


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def transfer_kind(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1, groups=1):
    """``"depthwise"``, ``"pairs"`` or None: which kernel computes ``F.conv2d(x, weight, None, stride,
    padding, dilation, groups)`` for these shapes, dtype and device (not whether it is built)."""
    if not (x.dim() == 4 and weight.dim() == 4 and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.numel() > 0
            and isinstance(groups, int) and groups >= 1 and x.shape[1] == groups * weight.shape[1]
            and _pair(dilation) == (1, 1)):
        return None
    c_in, c_out, stride, padding = x.shape[1], weight.shape[0], _pair(stride), _pair(padding)
    if (tuple(weight.shape[1:]) == (1, 3, 3) and stride == (2, 2) and padding == (1, 1)
            and c_out in (c_in, 2 * c_in)):
        return DEPTHWISE
    if (tuple(weight.shape[2:]) == (1, 1) and stride == (1, 1) and padding == (0, 0) and c_out % groups == 0
            and (weight.shape[1], c_out // groups) in ((2, 1), (1, 2))):
        return PAIRS
    return None


def _forward(kind, x_nhwc, weight, isa):
    ops = torch.ops.mgiad_kernels
    return (ops.dw3x3s2_forward if kind == DEPTHWISE else ops.pair1x1_forward)(x_nhwc, weight, isa)


def _grad_input(kind, grad_nhwc, weight, input_size, isa):
    if kind == DEPTHWISE:
        return torch.ops.mgiad_kernels.dw3x3s2_grad_input(grad_nhwc, weight, list(input_size), isa)
    return torch.ops.mgiad_kernels.pair1x1_grad_input(grad_nhwc, weight, isa)


def _grad_weight(kind, x_nhwc, grad_nhwc, weight, isa):
    if kind == DEPTHWISE:
        return torch.ops.mgiad_kernels.dw3x3s2_grad_weight(x_nhwc, grad_nhwc, isa)
    return torch.ops.mgiad_kernels.pair1x1_grad_weight(x_nhwc, grad_nhwc, weight.shape[1], isa)


class TransferConv(torch.autograd.Function):
    """y = conv2d(x, weight) of a transfer ``kind`` by the C++ kernels."""

    @staticmethod
    def forward(ctx, x, weight, kind, isa):
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous()
        ctx.save_for_backward(x_nhwc, weight)
        ctx.kind, ctx.isa = kind, isa
        ctx.x_channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return _like(_forward(kind, x_nhwc, weight, isa), x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_nhwc, weight = ctx.saved_tensors
        grad_nhwc = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = _grad_input(ctx.kind, grad_nhwc, weight, x_nhwc.shape, ctx.isa)
            if not ctx.x_channels_last:
                grad_x = grad_x.contiguous()
        if ctx.needs_input_grad[1]:
            grad_weight = _grad_weight(ctx.kind, x_nhwc, grad_nhwc, weight, ctx.isa)
        return grad_x, grad_weight, None, None


def _kind_to_run(x, weight, stride, padding, dilation, groups):
    """The kind if the kernels should run this call now (applicable, wanted, available), else None."""
    kind = transfer_kind(x, weight, stride, padding, dilation, groups)
    if kind is None or plain_pytorch_wanted() or not runtime.available():
        return None
    return kind


def transfer_conv(x, weight, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)`` with autograd: the kernels for
    the transfer shapes (:func:`transfer_kind`) when available, ``F.conv2d`` elsewhere."""
    kind = _kind_to_run(x, weight, stride, padding, dilation, groups)
    if kind is not None:
        return TransferConv.apply(x, weight, kind, runtime.isa())
    return F.conv2d(x, weight, None, stride, padding, dilation, groups)


def conv2d(x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)`` without autograd (inside an
    autograd function): the transfer kernels, else :func:`grouped_conv.conv2d` (grouped 3x3
    kernels or PyTorch)."""
    kind = _kind_to_run(x, weight, stride, padding, dilation, groups)
    if kind is None:
        return grouped_conv.conv2d(x, weight, stride, padding, dilation, groups)
    return _like(_forward(kind, x.contiguous(memory_format=torch.channels_last), weight.contiguous(),
                          runtime.isa()), x)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, output_mask):
    """``(grad_x, grad_weight)`` of :func:`conv2d`, the two wanted as ``output_mask`` says."""
    kind = _kind_to_run(x, weight, stride, padding, dilation, groups)
    if kind is None:
        return grouped_conv.conv2d_backward(grad, x, weight, stride, padding, dilation, groups, output_mask)
    isa, weight = runtime.isa(), weight.contiguous()
    grad_nhwc = grad.contiguous(memory_format=torch.channels_last)
    g_x = g_w = None
    if output_mask[0]:
        g_x = _like(_grad_input(kind, grad_nhwc, weight, x.shape, isa), x)
    if output_mask[1]:
        g_w = _grad_weight(kind, x.contiguous(memory_format=torch.channels_last), grad_nhwc, weight, isa)
    return g_x, g_w
