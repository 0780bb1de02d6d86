"""Building blocks shared by every architecture, written once.

Vocabulary of the paper (van Betteray, Rottmann, Kahl: "MGiaD: Multigrid in all dimensions"):
``u`` features, ``f`` data, ``A`` feature-to-data map, ``B`` data-to-feature map (smoother),
``R`` restriction of the residual, ``Pi`` FAS restriction of the features, ``P`` prolongation.

Conventions that reproduce the paper's weight counts: no convolution has a bias, and every
convolution is followed by BatchNorm then ReLU except ``A``/``B`` (whose BN+ReLU sit inside the
smoothing step, eq. 5) and the prolongation ``P`` (no BN unless asked for).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fast, recompute

__all__ = [
    "conv", "is_transfer", "KernelConv2d", "GroupedConv3x3", "TransferConv", "BNReLU", "ConvBNReLU",
    "Stem", "Classifier", "SmoothingStep", "smooth",
    "FASTransfer", "residual", "check_positive_int", "check_divisible", "is_tracing", "IMPLS", "check_impl",
]


def is_tracing() -> bool:
    """True under torch.jit.trace or torch.fx symbolic tracing, where Python checks on tensor
    shapes would be baked into (or break) the trace."""
    if torch.jit.is_tracing():
        return True
    try:
        from torch.fx._symbolic_trace import is_fx_symbolic_tracing
        return is_fx_symbolic_tracing()
    except Exception:  # private helper renamed: fall back to the flag it reads
        import torch.fx._symbolic_trace as fx_trace
        return bool(getattr(fx_trace, "_is_fx_tracing_flag", False))


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_divisible(name: str, value: int, by: int, what: str) -> None:
    if value % by:
        raise ValueError(f"{name}={by} does not divide the {value} channels of {what}")


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
         groups: int = 1) -> nn.Conv2d:
    """A bias-free 'same'-padded convolution: the linear map of every layer in the paper."""
    grouped_3x3 = (kernel_size == 3 and stride == 1 and in_channels == out_channels
                   and (groups > 1 or in_channels in (8, 16)))  # dense 8, 16: the kernels' one group
    cls = (GroupedConv3x3 if grouped_3x3 else
           TransferConv if is_transfer(in_channels, out_channels, kernel_size, stride, groups) else nn.Conv2d)
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
               groups=groups, bias=False)


def is_transfer(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int) -> bool:
    """A transfer that :mod:`mgiad.kernels` computes: depthwise 3x3 stride 2 with channel multiplier
    1 or 2 (``R``, ``Pi``), or 1x1 with 2 -> 1 or 1 -> 2 channels per group (``R-hat``, ``Pi-hat``,
    ``P-hat``)."""
    if kernel_size == 3 and stride == 2:
        return groups == in_channels and out_channels in (in_channels, 2 * in_channels)
    return (kernel_size == 1 and stride == 1 and in_channels % groups == 0 and out_channels % groups == 0
            and (in_channels // groups, out_channels // groups) in ((2, 1), (1, 2)))


class KernelConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that runs on :mod:`mgiad.kernels`' C++ kernels when ``use_kernels`` is set
    (``impl="fast"`` sets it) and they apply: same map, weights and state_dict keys."""

    use_kernels = False
    computes_conv2d = True  # the fast path and BN folding treat it as nn.Conv2d

    def forward(self, x: Tensor) -> Tensor:
        if (self.use_kernels and self.bias is None and self.padding_mode == "zeros"
                and not is_tracing()):  # the kernels also step aside under compile, autocast
            return self.kernel_forward(x)  # and dispatch modes
        return super().forward(x)

    def kernel_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class GroupedConv3x3(KernelConv2d):
    """A grouped 3x3 convolution (``A-hat``, ``B-hat``; also a dense one of 8 or 16 channels, the
    kernels' group size with one group) on the grouped 3x3 kernels."""

    def kernel_forward(self, x: Tensor) -> Tensor:
        from . import kernels
        return kernels.grouped_conv3x3(x, self.weight)


class TransferConv(KernelConv2d):
    """A transfer (:func:`is_transfer`): on the CPU on the transfer kernels, on a GPU by the
    implementation :mod:`mgiad.kernels.gpu` chooses."""

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None and self.padding_mode == "zeros" and not is_tracing() and x.is_cuda:
            from .kernels import gpu
            out = gpu.transfer_conv2d(x, self.weight, self.stride, self.padding, self.dilation,
                                      self.groups)
            if out is not None:
                return out
        return super().forward(x)

    def kernel_forward(self, x: Tensor) -> Tensor:
        from . import kernels
        return kernels.transfer_conv(x, self.weight, self.stride, self.padding, self.dilation, self.groups)


class BNReLU(nn.Sequential):
    """relu(bn(x)): the normalisation that follows every convolution (paper, section 4)."""

    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ConvBNReLU(nn.Sequential):
    """conv -> BN -> ReLU (ReLU optional, for ResNet's second convolution)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, relu: bool = True):
        layers = [conv(in_channels, out_channels, kernel_size, stride, groups),
                  nn.BatchNorm2d(out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.recompute = False  # set by the model: recompute="step" stores only the input
        self.use_kernels = False  # set by impl="fast": BN and ReLU in fused passes

    def forward(self, x: Tensor) -> Tensor:
        if self.recompute and recompute.recomputes(self):
            out = recompute.conv_bn_relu(self, x)
            if out is not None:
                return out
        if self.use_kernels and len(self) == 3 and not is_tracing():
            y = self[0](x)
            out = fast.batch_norm_relu(self[1], y)
            return self[2](self[1](y)) if out is None else out
        return super().forward(x)


class Stem(nn.Module):
    """Maps the image to the data ``f_1`` of the first level and checks the input's shape.

    ``"cifar"``: 3x3 conv, stride 1. ``"imagenet"``: 7x7 conv, stride 2, then 3x3 max-pool, stride 2.
    """

    kinds = ("cifar", "imagenet")

    def __init__(self, in_chans: int, out_channels: int, kind: str = "cifar"):
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"stem must be one of {list(self.kinds)}, got {kind!r}")
        self.in_chans, self.kind = in_chans, kind
        if kind == "cifar":
            self.conv = ConvBNReLU(in_chans, out_channels, 3)
            self.pool = nn.Identity()
        else:
            self.conv = ConvBNReLU(in_chans, out_channels, 7, stride=2)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if not is_tracing() and (x.dim() != 4 or x.shape[1] != self.in_chans):
            raise ValueError(f"expected input of shape (N, {self.in_chans}, H, W) for "
                             f"in_chans={self.in_chans}, got {tuple(x.shape)}")
        return self.pool(self.conv(x))


class Classifier(nn.Module):
    """Global average pooling of ``u`` on the last level, then a linear layer."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, u: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


IMPLS = ("fast", "reference")


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {list(IMPLS)}, got {impl!r}")
    return impl


class SmoothingStep(nn.Module):
    """One smoothing iteration, eq. (5) / algorithm 1 line 4 / algorithm 2 lines 2 and 9:

        u <- u + relu(bn(B(relu(bn(f - A(u))))))

    The step owns only its two BatchNorms; ``A(u)`` and ``B`` are passed in because they are
    shared between steps (MgNet^{A,B}) and between pre- and post-smoothing (SiC).
    ``impl="fast"`` trains through :mod:`mgiad.fast` (same values, half the stored activations);
    ``impl="reference"`` is the line below, always.
    """

    def __init__(self, channels: int, impl: str = "fast"):
        super().__init__()
        self.norm_residual = BNReLU(channels)
        self.norm_correction = BNReLU(channels)
        self.impl = check_impl(impl)
        self.recompute = False  # set by the model: recompute="step" (see smooth)

    def forward(self, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Module) -> Tensor:
        if self.impl == "fast" and not is_tracing() and fast.applies(self, B, u):
            return fast.smoothing_step(self, u, f, A_u, B)
        return u + self.norm_correction(B(self.norm_residual(f - A_u)))


def smooth(steps: Sequence[SmoothingStep], A: nn.Module, B, u: Tensor, f: Tensor,
           A_u: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Run ``nu`` smoothing steps with smoother ``A`` and ``B`` (one module, or one per step).

    ``A_u`` is ``A(u)`` if the caller already has it (eq. 9 and algorithm 2 line 5 compute it on
    the coarse level's initial ``u``); it is used once, never recomputed. Returns ``u`` and ``A(u)``
    for the returned ``u`` when still known (no step ran), else ``None``.
    A step with ``recompute`` set keeps only its inputs ``u``, ``f`` for backward, which runs
    ``A(u)`` and the step again (``recompute="step"``).
    """
    for i, step in enumerate(steps):
        B_i = B[i] if isinstance(B, nn.ModuleList) else B
        if getattr(step, "recompute", False) and recompute.recomputes(step):  # not folded steps
            u = recompute.smoothing_step(step, u, f, A, B_i, A_u)
        else:
            u = step(u, f, A(u) if A_u is None else A_u, B_i)
        A_u = None
    return u, A_u


def residual(f: Tensor, u: Tensor, A: nn.Module, A_u: Tensor | None = None) -> Tensor:
    """``f - A(u)``; ``A_u`` if the caller has ``A(u)`` already. A freshly computed ``A(u)`` is
    overwritten with the residual (one feature map fewer at once; autograd allows it, since a
    convolution's backward does not need its output)."""
    if A_u is not None:
        return f - A_u
    return A(u).neg_().add_(f)


class FASTransfer(nn.Module):
    """FAS transfer to a coarser grid, eq. (8)-(9) and algorithm 2 lines 4-5 (without the
    ``+ A'(u')`` term, which uses the coarse level's ``A`` and is added by the caller):

        u' = relu(bn(Pi(u))),    f' = relu(bn(R(f - A(u))))          (norm=True, the paper's text)
        u' = Pi(u),              f' = R(relu(f - A(u)))              (norm=False, the authors' code)

    In resolution (``kernel_size=3, stride=2, groups=c``): learnable depthwise poolings with channel
    multiplier ``c'/c``. In channels (``kernel_size=1, groups=c'``, ``c' = c/2``): two fine channels
    make one coarse channel (``R-hat``, ``Pi-hat``).
    """

    def __init__(self, channels: int, coarse_channels: int, kernel_size: int, stride: int,
                 groups: int, norm: bool = True):
        super().__init__()
        make = ConvBNReLU if norm else conv
        self.norm = norm
        self.Pi = make(channels, coarse_channels, kernel_size, stride, groups)
        self.R = make(channels, coarse_channels, kernel_size, stride, groups)

    def forward(self, u: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
        return self.Pi(u), self.restrict_residual(residual)

    def restrict_residual(self, residual: Tensor) -> Tensor:
        """``f'`` without ``+ A'(u')``: ``R(f - A u)`` (after a ReLU if ``norm=False``)."""
        return self.R(residual if self.norm else F.relu(residual))
