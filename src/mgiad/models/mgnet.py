"""MgNet (He & Xu 2019) as used in the MGiaD paper: algorithm 1 with FAS transfers, eq. (8)-(9).

``share="AB"`` is MgNet^{A,B} (one ``A_l`` and one ``B_l`` per level: a stationary iteration);
``share="A"`` is MgNet^A (``A_l`` shared, a new ``B_l^i`` in every step).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import SmoothingStep, check_divisible, check_positive_int, conv, smooth
from ._registry import register_model
from .multigrid import ResolutionMultigrid, scale_widths


class MgNetSmoother(nn.Module):
    """``nu`` smoothing steps ``u = u + B_l^i(f_l - A_l(u_l))`` on one level (algorithm 1, 3-4)."""

    def __init__(self, channels: int, steps: int, share_B: bool, groups: int = 1):
        super().__init__()
        self.A = conv(channels, channels, 3, groups=groups)
        self.B = (conv(channels, channels, 3, groups=groups) if share_B else
                  nn.ModuleList(conv(channels, channels, 3, groups=groups) for _ in range(steps)))
        self.steps = nn.ModuleList(SmoothingStep(channels) for _ in range(steps))

    def forward(self, f: Tensor, u: Tensor, A_u: Tensor | None = None) -> Tensor:
        return smooth(self.steps, self.A, self.B, u, f, A_u)[0]


@register_model("mgnet")
class MgNet(ResolutionMultigrid):
    """MgNet with learnable depthwise poolings ``R``, ``Pi``.

    Args:
        widths: channels per resolution level (paper: 64,128,256,256; ResNet20-like: 16,32,64).
        smoothing_steps: ``nu``, smoothing steps per level (an int, or one per level).
        share: ``"AB"`` (MgNet^{A,B}) or ``"A"`` (MgNet^A).
        width_mult: ``lambda``, multiplies every width.
        group_size: channels per group of ``A`` and ``B`` (the grouped MgNet of the paper's fig. 7);
            ``None`` means fully coupled.
        impl: ``"fast"`` (default) or ``"reference"``: how smoothing steps train (same results).
        recompute: ``False``, ``"level"`` (or ``True``) or ``"step"``: train with less memory by
            running parts of the forward again in backward (:mod:`mgiad.layers.recompute`).
        transfer_norm: ``True`` (default): BN + ReLU after the poolings ``R`` and ``Pi``, as the
            paper's text says of every convolution and as MGiaD's transfers are built. ``False``:
            the MgNet code of the MGiaD authors, ``u' = Pi(u)``, ``f' = R(relu(f - A u)) + A'(u')``,
            4 c_{l+1} fewer weights per transfer; with the unused level-1 pair that code also counts,
            it gives the paper's MgNet counts to the thousand, so ``mgiad reproduce`` trains it.
        global_pool, drop_rate, drop_path_rate: timm's head pooling (``"avg"``, ``"max"``,
            ``"avgmax"``, ``""``), dropout before the classifier, stochastic depth
            (:mod:`mgiad.models.base`).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stem: str = "cifar",
                 widths: Sequence[int] = (64, 128, 256, 256),
                 smoothing_steps: int | Sequence[int] = 2, share: str = "AB",
                 width_mult: float = 1, group_size: int | None = None, impl: str = "fast",
                 recompute: bool | str = False, transfer_norm: bool = True,
                 global_pool: str = "avg", drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        channels = scale_widths(widths, width_mult)
        if share not in ("AB", "A"):
            raise ValueError(f"share must be 'AB' or 'A', got {share!r}")
        steps = ([smoothing_steps] * len(channels) if isinstance(smoothing_steps, int)
                 else list(smoothing_steps))
        if len(steps) != len(channels):
            raise ValueError(f"smoothing_steps has {len(steps)} entries for {len(channels)} levels")
        smoothers = []
        for c, nu in zip(channels, steps):
            check_positive_int("smoothing_steps", nu)
            groups = 1
            if group_size is not None and check_positive_int("group_size", group_size) < c:
                check_divisible("group_size", c, group_size, "a resolution level")
                groups = c // group_size
            smoothers.append(MgNetSmoother(c, nu, share_B=share == "AB", groups=groups))
        super().__init__(num_classes, in_chans, stem, channels, smoothers, impl, recompute,
                         transfer_norm, global_pool, drop_rate, drop_path_rate)
