"""Fast CPU kernels (C++, built on first use) for NHWC float32: grouped 3x3 convolutions and the
multigrid transfers.

``grouped_conv3x3(x, weight)`` is ``F.conv2d(x, weight, padding=1, groups=C // weight.shape[1])``;
``transfer_conv(x, weight, stride, padding, dilation, groups)`` is ``F.conv2d`` for depthwise 3x3
stride-2 convolutions (channel multiplier 1 or 2) and 1x1 convolutions with 2 -> 1 or 1 -> 2 channels
per group. Both have autograd and run on AVX-512 / AVX2 kernels where they apply, on PyTorch
elsewhere; ``conv2d`` and ``conv2d_backward`` (no autograd) run whichever kernel applies.
``available()`` says whether the kernels run here; ``MGIAD_KERNELS=0`` turns them off.
Benchmarks (outside the package): ``python benchmarks/kernels_bench.py [--transfers]``.
"""
from .functional import conv2d, conv2d_backward
from .grouped_conv import GROUP_SIZES, grouped_conv3x3, kernel_applies
from .runtime import ISA_NAMES, available, enabled, isa
from .transfers import transfer_conv, transfer_kind

__all__ = ["GROUP_SIZES", "ISA_NAMES", "available", "conv2d", "conv2d_backward", "enabled",
           "grouped_conv3x3", "isa", "kernel_applies", "transfer_conv", "transfer_kind"]
