"""MGiaD: multigrid in all dimensions (algorithm 3), built on the channel V-cycle SiC (algorithm 2).

On resolution level ``l`` the smoother is one SiC V-cycle over channel levels
``kappa = 1..K_l`` with ``c_{l,kappa+1} = c_{l,kappa} / 2``, halving while the half is still at least
``c_K`` (``coarse_channels``); the coarsest level is fully coupled, the others use grouped ``A-hat``
and ``B-hat`` with ``group_size`` channels per group.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import (FASTransfer, SmoothingStep, check_divisible, check_positive_int, conv,
                     dispatch, residual, segment, smooth)
from ._registry import register_model
from .multigrid import ResolutionMultigrid, scale_widths


def channel_levels(channels: int, coarse_channels: int) -> list[int]:
    """``c_{l,1}, c_{l,2}, ...``: halve while the half is still ``>= c_K``.

    The coarsest level therefore has between ``c_K`` and ``2 c_K`` channels (or ``channels`` when
    that is already below ``2 c_K``).
    """
    levels = [channels]
    while levels[-1] // 2 >= coarse_channels:
        if levels[-1] % 2:
            raise ValueError(f"channel level of width {levels[-1]} cannot be halved; choose "
                             f"widths/width_mult/coarse_channels (c_K={coarse_channels}) so that "
                             "every channel level above c_K is even")
        levels.append(levels[-1] // 2)
    return levels


class SiC(nn.Module):
    """Smoothing in channels on channel level ``kappa`` (algorithm 2), recursing to ``kappa + 1``.

    ``A-hat`` and ``B-hat`` are shared by the pre- and post-smoothing steps; each step has its own
    BatchNorms. ``R-hat`` and ``Pi-hat`` (1x1, two fine channels per coarse channel) restrict to
    ``c/2`` channels, ``P-hat`` (1x1) prolongs back.
    """

    def __init__(self, channels: int, coarse_channels: int, group_size: int, pre_smooth: int = 1,
                 post_smooth: int = 1, prolong_norm: bool = False):
        super().__init__()
        levels = channel_levels(channels, coarse_channels)
        coarsest = len(levels) == 1
        if coarsest or group_size >= channels:  # fully coupled; g_s >= c means one group
            groups = 1
        else:
            check_divisible("group_size", channels, group_size, "a channel level")
            groups = channels // group_size
        self.A = conv(channels, channels, 3, groups=groups)
        self.B = conv(channels, channels, 3, groups=groups)
        self.pre = nn.ModuleList(SmoothingStep(channels) for _ in range(pre_smooth))
        self.post = nn.ModuleList(SmoothingStep(channels) for _ in range(post_smooth))
        self.transfer = self.coarse = self.P = None
        self.recompute = False  # set by the model: "step" under recompute="step"
        if not coarsest:
            half = levels[1]
            self.transfer = FASTransfer(channels, half, kernel_size=1, stride=1, groups=half)
            self.coarse = SiC(half, coarse_channels, group_size, pre_smooth, post_smooth,
                              prolong_norm)
            self.P = conv(half, channels, 1, groups=half)
            if prolong_norm:
                self.P = nn.Sequential(self.P, nn.BatchNorm2d(channels))

    def forward(self, f: Tensor, u: Tensor, A_u: Tensor | None = None) -> Tensor:
        u, A_u = smooth(self.pre, self.A, self.B, u, f, A_u)          # lines 1-2: pre-smoothing
        if self.coarse is not None:                                   # line 3: kappa != K
            u, A_u = self.correct(f, u, A_u), None                    # lines 4-7
        return smooth(self.post, self.A, self.B, u, f, A_u)[0]       # lines 8-9: post-smoothing

    @segment("step")  # recompute="step": stores f, u only
    def correct(self, f: Tensor, u: Tensor, A_u: Tensor | None = None) -> Tensor:
        """Lines 4-7: the correction from channel level ``kappa + 1``."""
        u_c, f_c, A_u_c = self.restrict(f, u, A_u)                    # lines 4-5
        u_hat = self.coarse(f_c, u_c, A_u_c)                          # line 6
        return dispatch.plus(self.P, u_hat, u)                        # line 7: u + P-hat(u_hat)

    @segment("step", owner=lambda self, *inputs: self.transfer, keep=2)
    def restrict(self, f: Tensor, u: Tensor, A_u: Tensor | None = None):
        """Lines 4-5: ``u_c = Pi-hat(u)``, ``f_c = R-hat(f - A-hat u) + A-hat_{k+1} u_c``; also
        returns ``A-hat_{k+1} u_c``, reused by the coarse level's first smoothing step (or
        ``None`` under ``recompute="step"``, which stores only ``f``, ``u`` for this: holding
        ``A-hat_{k+1} u_c`` through the coarse cycle would cost more memory at the peak)."""
        # u_c = Pi-hat(u), f_c = R-hat(f - A-hat u) + A-hat_{k+1} u_c
        return self.transfer(u, residual(f, u, self.A, A_u), self.coarse.A)


@register_model("mgiad")
class MGiaD(ResolutionMultigrid):
    """MGiaD (algorithm 3): MgNet^{A,B}'s resolution levels, each smoothed by one SiC V-cycle.

    Args:
        widths: channels per resolution level before ``width_mult``.
        width_mult: ``lambda``, the channel scaling (paper: 1, 2, 3).
        group_size: ``g_s``, channels per group of ``A-hat``, ``B-hat`` on non-coarsest channel
            levels; a ``group_size`` at least as large as a channel level couples it fully.
        coarse_channels: ``c_K``; channel levels halve while the half stays ``>= c_K``.
        pre_smooth, post_smooth: ``eta_pre``, ``eta_post`` smoothing steps per channel level.
        prolong_norm: BatchNorm after ``P-hat`` (the paper's Tiny ImageNet and ImageNet models).
        impl: ``"fast"`` (default) or ``"reference"``: how smoothing steps train (same results).
        recompute: ``False``, ``"level"`` (or ``True``) or ``"step"``: train with less memory by
            running parts of the forward again in backward (:mod:`mgiad.layers.recompute`).
        global_pool, drop_rate, drop_path_rate: timm's head pooling (``"avg"``, ``"max"``,
            ``"avgmax"``, ``""``), dropout before the classifier, stochastic depth
            (:mod:`mgiad.models.base`).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 256), width_mult: float = 1,
                 group_size: int = 8, coarse_channels: int = 64, pre_smooth: int = 1,
                 post_smooth: int = 1, prolong_norm: bool = False, impl: str = "fast",
                 recompute: bool | str = False, global_pool: str = "avg", drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        channels = scale_widths(widths, width_mult)
        check_positive_int("group_size", group_size)
        check_positive_int("coarse_channels", coarse_channels)
        for name, value in (("pre_smooth", pre_smooth), ("post_smooth", post_smooth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if pre_smooth + post_smooth == 0:
            raise ValueError("pre_smooth + post_smooth must be at least 1")
        smoothers = [SiC(c, coarse_channels, group_size, pre_smooth, post_smooth, prolong_norm)
                     for c in channels]
        super().__init__(num_classes, in_chans, stem, channels, smoothers, impl, recompute,
                         global_pool=global_pool, drop_rate=drop_rate,
                         drop_path_rate=drop_path_rate)
