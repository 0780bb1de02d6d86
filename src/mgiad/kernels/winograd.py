"""Dense 3x3 convolutions for inference by Winograd's F(4x4, 3x3) (C++ kernel, no autograd): each
4x4 block of output pixels costs 36 multiplications per input-output channel pair instead of 144.
It computes the convolution of the coarsest channel level of MGiaD (and any other dense 3x3,
stride 1, padding 1 convolution) in BatchNorm-folded inference, with the epilogue of
:mod:`.epilogue`; the weight's transform ``G g G^T`` is an operator of its own, which a frozen
trace computes once (:func:`mgiad.deploy.optimize_for_inference`). Where the transform does not pay
(few tiles and a transformed weight too large to stay in the caches: ResNet18's 512 channels at 4x4,
batch 1) the operator runs PyTorch's direct convolution and the epilogue instead.

The result differs from a direct convolution by rounding only (relative ~1e-5 in float32: the
transforms add and scale values before the products). ``MGIAD_WINOGRAD=0`` (or off, false, no)
sends these convolutions back to PyTorch's.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import runtime
from .autograd import as_pair, operators

VECTOR_WIDTH = {1: 8, 2: 16}  # floats per vector of the instruction set (runtime.isa())


def takes(x: Tensor, weight: Tensor, stride, padding, dilation, groups) -> bool:
    """An inference call of the ``F.conv2d`` signature that the kernel computes: dense 3x3, stride 1,
    zero padding 1, float32 on the CPU, channels in and out multiples of the vector width. Whether
    the kernels may run at all is the caller's question (:func:`~.autograd.may_run`)."""
    if not (x.dim() == 4 and weight.dim() == 4 and tuple(weight.shape[2:]) == (3, 3) and groups == 1
            and weight.shape[1] == x.shape[1] and x.dtype == weight.dtype == torch.float32
            and x.device.type == weight.device.type == "cpu" and as_pair(stride) == (1, 1)
            and as_pair(padding) == (1, 1) and as_pair(dilation) == (1, 1)):
        return False
    width = VECTOR_WIDTH.get(runtime.isa())
    return (width is not None and runtime.flag("MGIAD_WINOGRAD") and x.shape[1] % width == 0
            and weight.shape[0] % width == 0)


def transform_weight(weight: Tensor) -> Tensor:
    """``U [36, C, K]`` of a weight ``[K, C, 3, 3]``: ``U[6 i + j, c, k] = (G g_kc G^T)[i, j]``."""
    return operators().winograd_weight(weight)


def conv2d(x: Tensor, weight: Tensor, alpha, beta, add, add_scale, relu: bool, residual) -> Tensor:
    """``F.conv2d(x, weight, padding=1)`` and the epilogue, ``x`` channels_last; the output is too."""
    return operators().winograd_conv3x3(x, weight, transform_weight(weight), alpha, beta, add, add_scale,
                                        relu, residual, runtime.isa())
