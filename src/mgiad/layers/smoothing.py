"""The smoothing step (eq. 5) and the FAS transfer (eq. 8-9): the two operations of every
multigrid level, in the paper's symbols ``u``, ``f``, ``A``, ``B``, ``R``, ``Pi``."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from . import dispatch
from .blocks import BNReLU, ConvBNReLU
from .checks import check_impl
from .conv import conv
from .drop import drop_path

__all__ = ["SmoothingStep", "smooth", "residual", "FASTransfer"]


class SmoothingStep(nn.Module):
    """One smoothing iteration, eq. (5) / algorithm 1 line 4 / algorithm 2 lines 2 and 9:

        u <- u + relu(bn(B(relu(bn(f - A(u))))))

    The step owns only its two BatchNorms; ``A(u)`` and ``B`` are passed in because they are
    shared between steps (MgNet^{A,B}) and between pre- and post-smoothing (SiC).
    ``impl="fast"`` trains through :mod:`mgiad.layers.fast` (same values, half the stored activations);
    ``impl="reference"`` is the line below, always.
    """

    def __init__(self, channels: int, impl: str = "fast"):
        super().__init__()
        self.norm_residual = BNReLU(channels)
        self.norm_correction = BNReLU(channels)
        self.impl = check_impl(impl)
        self.recompute = False  # set by the model: recompute="step" (see smooth)
        self.drop_path = 0.0  # set by the model's drop_path_rate: stochastic depth of the step

    def forward(self, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Module) -> Tensor:
        return dispatch.smoothing_step(self, u, f, A_u, B)

    def reference_forward(self, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Module) -> Tensor:
        """Eq. (5) as written: ``u + relu(bn(B(relu(bn(f - A u)))))``; while training with a
        ``drop_path`` rate, the correction of a sample is dropped with that probability."""
        correction = self.norm_correction(B(self.norm_residual(f - A_u)))
        return u + drop_path(correction, self.drop_path, self.training)


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
        u = dispatch.smooth_step(step, u, f, A, B_i, A_u)  # u = u + B_i(f - A u), eq. (5)
        A_u = None
    return u, A_u


def residual(f: Tensor, u: Tensor, A: nn.Module, A_u: Tensor | None = None) -> Tensor:
    """``f - A(u)``; ``A_u`` if the caller has ``A(u)`` already."""
    return dispatch.residual(f, u, A, A_u)


class FASTransfer(nn.Module):
    """FAS transfer to a coarser grid, eq. (8)-(9) and algorithm 2 lines 4-5:

        u' = relu(bn(Pi(u))),    f' = relu(bn(R(f - A(u)))) + A'(u')        (norm=True, the paper's text)
        u' = Pi(u),              f' = R(relu(f - A(u))) + A'(u')            (norm=False, the authors' code)

    In resolution (``kernel_size=3, stride=2, groups=c``): learnable depthwise poolings with channel
    multiplier ``c'/c``. In channels (``kernel_size=1, groups=c'``, ``c' = c/2``): two fine channels
    make one coarse channel (``R-hat``, ``Pi-hat``). ``A'`` is the coarse level's, passed in.
    """

    def __init__(self, channels: int, coarse_channels: int, kernel_size: int, stride: int,
                 groups: int, norm: bool = True):
        super().__init__()
        make = ConvBNReLU if norm else conv
        self.norm = norm
        self.Pi = make(channels, coarse_channels, kernel_size, stride, groups)
        self.R = make(channels, coarse_channels, kernel_size, stride, groups)

    def forward(self, u: Tensor, residual: Tensor, A: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """``u' = Pi(u)``, ``f' = R(f - A u) + A'(u')`` from ``u`` and ``residual = f - A u``; also
        returns ``A'(u')``, which the coarse level's first smoothing step reuses."""
        u_coarse = self.Pi(u)
        A_u = A(u_coarse)
        return u_coarse, self.restrict_residual(residual, plus=A_u), A_u

    def restrict_residual(self, residual: Tensor, plus: Tensor | None = None) -> Tensor:
        """``R(f - A u)`` (after a ReLU if ``norm=False``), ``+ plus`` if given."""
        return dispatch.plus(self.R, residual if self.norm else F.relu(residual), plus)
