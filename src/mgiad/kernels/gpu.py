"""Which implementation computes the multigrid transfers on a GPU: the one dispatch point.

``MGIAD_GPU_TRANSFERS`` = ``cudnn`` (default: ``F.conv2d``), ``elementwise``
(:mod:`.elementwise`: arithmetic that ``torch.compile`` can fuse) or ``triton``
(:mod:`.triton_transfers`: one Triton kernel per direction). All three compute the same map and
gradients; which is fastest is for ``benchmarks/gpu_suite.py --plan transfers`` to say
(docs/performance.md: cuDNN runs these at 2-5% of the memory bandwidth of an H200).
"""
from __future__ import annotations

import os

from torch import Tensor

from . import elementwise, triton_transfers

__all__ = ["IMPLEMENTATIONS", "implementation", "applies", "transfer_conv2d"]

IMPLEMENTATIONS = ("cudnn", "elementwise", "triton")
MAX_TAPS = 9  # input channels per group x kernel taps, per output


def implementation() -> str:
    value = os.environ.get("MGIAD_GPU_TRANSFERS", "cudnn").strip().lower() or "cudnn"
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"MGIAD_GPU_TRANSFERS={value!r}: use one of {', '.join(IMPLEMENTATIONS)}")
    return value


def applies(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> bool:
    """A CUDA call with few taps per output and 'same' padding: a transfer."""
    if not (x.is_cuda and x.dim() == 4 and weight.dim() == 4 and groups > 1):
        return False
    per_in, k_h, k_w = weight.shape[1:]
    return (tuple(dilation) == (1, 1) and x.shape[1] == per_in * groups and k_h == k_w
            and tuple(padding) == (k_h // 2, k_w // 2) and stride[0] == stride[1]
            and weight.shape[0] % groups == 0 and per_in * k_h * k_w <= MAX_TAPS)


def transfer_conv2d(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor | None:
    """The transfer by the chosen implementation, or ``None`` where ``F.conv2d`` should run it."""
    impl = implementation()
    if impl == "cudnn" or not applies(x, weight, stride, padding, dilation, groups):
        return None
    if impl == "triton" and triton_transfers.available():
        return triton_transfers.conv2d(x, weight, stride[0], groups)
    return elementwise.conv2d(x, weight, stride, padding, groups)
