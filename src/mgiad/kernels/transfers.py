"""The multigrid transfers with autograd: depthwise 3x3 convolutions with stride 2 and padding 1
(channel multiplier 1 or 2; the poolings ``R``, ``Pi`` in resolution) and 1x1 grouped convolutions
with 2 -> 1 or 1 -> 2 channels per group (``R-hat``, ``Pi-hat``, ``P-hat``). The C++ kernels run
them where they apply, ``F.conv2d`` elsewhere. No bias."""
import torch
import torch.nn.functional as F

from . import runtime
from .autograd import ConvKernels, KernelConv, as_pair, may_run, operators

DEPTHWISE, PAIRS = "depthwise", "pairs"


def transfer_kind(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1, groups=1):
    """``"depthwise"``, ``"pairs"`` or None: which kernel computes ``F.conv2d(x, weight, None, stride,
    padding, dilation, groups)`` for these shapes, dtype and device (not whether it is built)."""
    if not (x.dim() == 4 and weight.dim() == 4 and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.numel() > 0
            and isinstance(groups, int) and groups >= 1 and x.shape[1] == groups * weight.shape[1]
            and as_pair(dilation) == (1, 1)):
        return None
    c_in, c_out, stride, padding = x.shape[1], weight.shape[0], as_pair(stride), as_pair(padding)
    if (tuple(weight.shape[1:]) == (1, 3, 3) and stride == (2, 2) and padding == (1, 1)
            and c_out in (c_in, 2 * c_in)):
        return DEPTHWISE
    if (tuple(weight.shape[2:]) == (1, 1) and stride == (1, 1) and padding == (0, 0) and c_out % groups == 0
            and (weight.shape[1], c_out // groups) in ((2, 1), (1, 2))):
        return PAIRS
    return None


KERNELS = {
    DEPTHWISE: ConvKernels(
        forward=lambda x, w, isa: operators().dw3x3s2_forward(x, w, isa),
        grad_input=lambda g, w, input_shape, isa: operators().dw3x3s2_grad_input(g, w, list(input_shape), isa),
        grad_weight=lambda x, g, w, isa: operators().dw3x3s2_grad_weight(x, g, isa),
        epilogue=lambda x, w, *epilogue: operators().dw3x3s2_epilogue(x, w, *epilogue)),
    PAIRS: ConvKernels(
        forward=lambda x, w, isa: operators().pair1x1_forward(x, w, isa),
        grad_input=lambda g, w, input_shape, isa: operators().pair1x1_grad_input(g, w, isa),
        grad_weight=lambda x, g, w, isa: operators().pair1x1_grad_weight(x, g, w.shape[1], isa),
        epilogue=lambda x, w, *epilogue: operators().pair1x1_epilogue(x, w, *epilogue)),
}


def transfer_conv(x, weight, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)`` with autograd: the kernels for
    the transfer shapes (:func:`transfer_kind`) when available, ``F.conv2d`` elsewhere."""
    kind = transfer_kind(x, weight, stride, padding, dilation, groups)
    if kind is not None and may_run():
        return KernelConv.apply(x, weight, KERNELS[kind], runtime.isa())
    return F.conv2d(x, weight, None, stride, padding, dilation, groups)
