"""Building blocks shared by every architecture, written once, in the paper's vocabulary.

``conv`` (the convolutions), ``blocks`` (BN-ReLU, conv-BN-ReLU, stem, classifier), ``smoothing``
(the smoothing step, eq. 5, and the FAS transfer, eq. 8-9), ``dispatch`` (the one place that
decides kernels / fast path / recomputation / reference), ``fast`` and ``recompute`` (those
implementations), ``fold`` (BatchNorm folding for inference), ``checks`` (argument checks).
"""
from .blocks import BNReLU, Classifier, ConvBNReLU, Stem
from .drop import check_rate, drop_path
from .checks import IMPLS, check_divisible, check_impl, check_positive_int, is_tracing
from .conv import GroupedConv3x3, KernelConv2d, TransferConv, conv, is_transfer
from .dispatch import segment
from .recompute import RECOMPUTE, check_recompute
from .smoothing import FASTransfer, SmoothingStep, residual, smooth

__all__ = [
    "conv", "is_transfer", "KernelConv2d", "GroupedConv3x3", "TransferConv", "BNReLU", "ConvBNReLU",
    "Stem", "Classifier", "SmoothingStep", "smooth", "FASTransfer", "residual", "check_positive_int",
    "check_divisible", "is_tracing", "IMPLS", "check_impl", "segment", "RECOMPUTE", "check_recompute",
    "drop_path", "check_rate",
]
