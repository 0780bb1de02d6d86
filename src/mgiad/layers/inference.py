"""Inference with BatchNorm folded (:mod:`.fold`): each layer as one convolution whose epilogue does
the element-wise work as the output is computed (:mod:`mgiad.kernels.epilogue`). With
``s1``, ``t1`` the first BatchNorm of a smoothing step as an affine map and ``B' = s2 B``,
``b2`` the second folded into ``B``, eq. (5) becomes two passes:

    z = relu(s1 (f - A u) + t1)        A's convolution, epilogue alpha=-s1, beta=t1, add=s1 f, ReLU
    u = u + relu(B' z + b2)            B''s convolution, epilogue beta=b2, ReLU, residual u

and a transfer's conv-BN-ReLU is one convolution with epilogue ``beta``, ReLU. :mod:`.dispatch` calls
these for folded modules outside tracing; without the kernels (or with gradients wanted) they run
as PyTorch operations with the same values.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..kernels import epilogue

__all__ = ["conv2d", "conv_relu", "conv_plus", "residual", "smoothing_step"]


def _conv(conv: nn.Conv2d, x: Tensor, bias: Tensor | None = None, **ep) -> Tensor:
    return epilogue.conv2d(x, conv.weight, bias, conv.stride, conv.padding, conv.dilation,
                           conv.groups, **ep)


def conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A folded convolution: the bias as the epilogue."""
    return _conv(conv, x, conv.bias)


def conv_relu(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``relu(conv(x) + b)``: a conv-BN-ReLU block with its BatchNorm folded into ``conv``."""
    return _conv(conv, x, conv.bias, relu=True)


def conv_plus(module: nn.Module, x: Tensor, y: Tensor) -> Tensor | None:
    """``module(x) + y`` with ``y`` added in the epilogue, for a convolution on the kernels (with
    or without a folded bias) or a conv-BN-ReLU block with its BatchNorm folded, on the CPU; None
    otherwise (elsewhere the module's own dispatch, e.g. a GPU's transfer implementation, runs)."""
    if x.device.type != "cpu":
        return None
    if isinstance(module, nn.Sequential):
        if (getattr(module, "use_kernels", False) and len(module) == 3
                and isinstance(module[1], nn.Identity) and module[0].bias is not None):
            return _conv(module[0], x, module[0].bias, relu=True, residual=y)
        return None
    if getattr(module, "use_kernels", False) and module.padding_mode == "zeros":
        return _conv(module, x, module.bias, residual=y)
    return None


def residual(A: nn.Conv2d, u: Tensor, f: Tensor) -> Tensor:
    """``f - A(u)`` in one pass: A's convolution with epilogue ``-y + f``."""
    minus_one = torch.full((A.out_channels,), -1.0, dtype=u.dtype, device=u.device)
    return _conv(A, u, alpha=minus_one, add=f)


def smoothing_step(step: nn.Module, u: Tensor, f: Tensor, A: nn.Module,
                   A_u: Tensor | None = None) -> Tensor:
    """Eq. (5) for a :class:`~mgiad.layers.fold.FoldedSmoothingStep`, ``A_u = A(u)`` if known."""
    s1, t1 = step.residual_scale, step.residual_shift
    zero = _is_zero(u)  # u = 0 (the initial u_1, a broadcast zero), so A u = 0
    if _plain_3x3(step.B, bias=True) and (zero or A_u is not None or _plain_3x3(A, bias=False)):
        fused = epilogue.smoothing_step(None if zero else u, f, None if zero or A_u is not None else A.weight,
                                        None if zero else A_u, s1, t1, step.B.weight, step.B.bias)
        if fused is not None:  # one kernel call
            return fused
    if zero:
        z = epilogue.apply(f, alpha=s1, beta=t1, relu=True)              # relu(s1 f + t1)
        return _conv(step.B, z, step.B.bias, relu=True)                  # relu(B' z + b2)
    norm = dict(alpha=-s1, beta=t1, add=f, add_scale=s1, relu=True)      # relu(s1 (f - y) + t1)
    z = _conv(A, u, **norm) if A_u is None else epilogue.apply(A_u, **norm)
    return _conv(step.B, z, step.B.bias, relu=True, residual=u)          # u + relu(B' z + b2)


def _plain_3x3(conv: nn.Module, bias: bool) -> bool:
    """A 3x3 convolution, stride 1, zero padding 1, with a bias or without (as asked)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and (conv.bias is not None) == bias)


def _is_zero(u: Tensor) -> bool:
    """``u`` is one zero broadcast to a feature map (:func:`mgiad.layers.dispatch.zero_features`;
    its value is not read back while tracing, where only that function makes such a tensor)."""
    if u.dim() != 4 or u.stride() != (0, 0, 0, 0) or u.numel() == 0:
        return False
    return torch.jit.is_tracing() or not bool(u.flatten()[0])
