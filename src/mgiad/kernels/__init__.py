"""Fast CPU kernels (C++, built on first use): grouped 3x3 convolutions for NHWC float32.

``grouped_conv3x3(x, weight)`` is ``F.conv2d(x, weight, padding=1, groups=C // weight.shape[1])`` with
autograd, run by AVX-512 / AVX2 kernels where they apply and by PyTorch elsewhere. ``available()``
says whether the kernels run here; ``MGIAD_KERNELS=0`` turns them off. Benchmark:
``python -m mgiad.kernels.bench``.
"""
from .grouped_conv import GROUP_SIZES, conv2d, conv2d_backward, grouped_conv3x3, kernel_applies
from .runtime import ISA_NAMES, available, enabled, isa

__all__ = ["GROUP_SIZES", "ISA_NAMES", "available", "conv2d", "conv2d_backward", "enabled",
           "grouped_conv3x3", "isa", "kernel_applies"]
