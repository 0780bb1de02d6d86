"""The smoothing step's element-wise work in fused passes (C++, ``csrc/batchnorm.cpp``): eq. (5)'s
``r = f - A(u)``, its BatchNorm statistics, ``relu(bn(.))`` and the update ``u + relu(bn(z))``, and
the backward of ``relu(bn(.))`` with ``-g`` for ``A(u)`` written in the same pass.

All functions take channels_last float32 CPU feature maps; :func:`applies` says whether a call can
use them. :mod:`mgiad.layers.fast` calls them from its autograd functions (no autograd here).
"""
import torch
from torch import Tensor

from .autograd import may_run


def applies(*maps: Tensor) -> bool:
    """The kernels are available and every map is a 4-d channels_last float32 CPU tensor of one
    shape with more than one value per channel (BatchNorm's unbiased variance needs two)."""
    first = maps[0]
    return (first.dim() == 4 and first.numel() > first.shape[1]
            and all(m.shape == first.shape and m.dtype == torch.float32 and m.device.type == "cpu"
                    and m.is_contiguous(memory_format=torch.channels_last) for m in maps)
            and may_run())


def residual_stats(f: Tensor, A_u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(r, mean, var)``: ``r = f - A_u`` and its batch mean and biased variance, in one pass."""
    return torch.ops.mgiad_kernels.residual_stats(f, A_u)


def batch_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, var)`` per channel (biased variance), in one pass."""
    return torch.ops.mgiad_kernels.batch_stats(x)


def affine_relu(x: Tensor, scale: Tensor, shift: Tensor, u: Tensor | None = None) -> Tensor:
    """``relu(x * scale + shift)`` per channel, plus ``u`` where given, in one pass."""
    return torch.ops.mgiad_kernels.affine_relu(u, x, scale, shift)


def relu_bn_backward(grad: Tensor, x: Tensor, mean: Tensor, invstd: Tensor, gamma: Tensor,
                     beta: Tensor, negated: bool = False):
    """Backward of ``relu(bn(x))`` in training mode: ``(g_x, -g_x if negated else None, g_gamma,
    g_beta)``; two passes (sums, then ``g_x``)."""
    g_x, neg, g_gamma, g_beta = torch.ops.mgiad_kernels.relu_bn_backward(
        grad, x, mean, invstd, gamma, beta, negated)
    return g_x, (neg if negated else None), g_gamma, g_beta
