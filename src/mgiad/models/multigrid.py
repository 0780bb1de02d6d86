"""The resolution multigrid shared by MgNet and MGiaD: the coarsening leg of a V-cycle with FAS.

Algorithm 1 (MgNet) and algorithm 3 (MGiaD) differ only in the smoother used on a resolution level
(a stationary iteration with ``A_l``, ``B_l``, or the channel V-cycle ``SiC``), so both subclass
:class:`ResolutionMultigrid` and provide the smoothers.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from torch import Tensor, nn

from ..layers import (ConvBNReLU, FASTransfer, KernelConv2d, SmoothingStep, Stem, check_impl,
                     check_positive_int, check_recompute, residual, segment)
from ..layers.dispatch import input_layout, output_layout, zero_features
from .base import ImageClassifier


def scale_widths(widths: Sequence[int], width_mult: float) -> list[int]:
    """Channels per resolution level, ``lambda * c_l``; fractional channels are an error."""
    if not widths:
        raise ValueError("widths must name at least one resolution level")
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) \
            or not 0 < width_mult < float("inf"):  # NaN fails this too
        raise ValueError(f"width_mult must be a positive finite number, got {width_mult!r}")
    scaled = []
    for w in widths:
        check_positive_int("every entry of widths", w)
        c = w * width_mult
        if abs(c - round(c)) > 1e-9:
            raise ValueError(f"width_mult={width_mult} gives fractional channels ({w} x "
                             f"{width_mult} = {c}); choose it so that every width is an integer")
        scaled.append(int(round(c)))
    return scaled


class ResolutionMultigrid(ImageClassifier):
    """Stem, one smoother per resolution level, FAS transfers between levels, classifier.

    Each smoother is a module with a convolution ``A`` (the level's ``A_l``) and a forward
    ``smoother(f, u, A_u) -> u`` where ``A_u = A(u)`` for the given ``u``. ``impl`` picks the
    smoothing steps' implementation (:class:`~mgiad.layers.SmoothingStep`); parameters, buffers
    and results are the same for both. ``recompute`` (``False``, ``"level"``, ``"step"``; see
    :mod:`mgiad.layers.recompute`) stores less for backward and runs parts of the forward again.
    ``transfer_norm``: BN + ReLU after ``R`` and ``Pi`` (the paper's text), or none of them and a
    ReLU on ``f - A u`` before ``R`` (the authors' code; see :class:`~mgiad.layers.FASTransfer`).
    ``drop_path_rate``: stochastic depth of the smoothing steps (eq. 5): while training, a
    step's correction ``B(...)`` is dropped per sample, at a rate rising linearly over the steps
    in module order (resolution levels in turn) from 0 to ``drop_path_rate``; such steps train
    through the reference code. The features of level ``l`` (``feature_info``) are ``u_l`` after
    its smoother.
    """

    def __init__(self, num_classes: int, in_chans: int, stem: str, channels: Sequence[int],
                 smoothers: Sequence[nn.Module], impl: str = "fast", recompute: bool | str = False,
                 transfer_norm: bool = True, global_pool: str = "avg", drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__(num_classes, in_chans, global_pool, drop_rate)
        self.impl = check_impl(impl)
        self.channels = list(channels)
        self.stem = Stem(in_chans, channels[0], stem)
        self.smoothers = nn.ModuleList(smoothers)
        # R_l^{l+1}, Pi_l^{l+1}: 3x3, stride 2, depthwise with channel multiplier c_{l+1}/c_l
        self.transfers = nn.ModuleList(
            FASTransfer(c, c_next, kernel_size=3, stride=2, groups=c, norm=transfer_norm)
            for c, c_next in zip(channels[:-1], channels[1:]))
        self.init_head(self.channels, [f"smoothers.{l}" for l in range(len(self.channels))])
        init_weights(self)
        self.set_drop_path([m for m in self.modules() if isinstance(m, SmoothingStep)],
                           drop_path_rate)
        self.set_impl(impl)
        self.recompute = recompute

    @property
    def recompute(self) -> str | bool:
        """``False``, ``"level"`` or ``"step"`` (see :data:`RECOMPUTE`); ``True`` means ``"level"``."""
        return self._recompute

    @recompute.setter
    def recompute(self, mode: str | bool) -> None:
        self._recompute = check_recompute(mode)
        for m in self.modules():
            if hasattr(m, "recompute") and m is not self:  # smoothing steps, SiC levels
                m.recompute = "step" if self._recompute == "step" else False
        if isinstance(getattr(self, "config", None), dict):
            self.config["recompute"] = self._recompute

    @property
    def grad_checkpointing(self) -> bool:
        return bool(self._recompute)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch: ``recompute="level"`` (or the finer ``"step"`` kept) when ``enable``."""
        self.recompute = (self._recompute or "level") if enable else False

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Stem; then each level's smoother, followed by the transfer leaving that level."""
        return dict(stem=r"^stem\.", blocks=[(r"^smoothers\.(\d+)\.", None),
                                             (r"^transfers\.(\d+)\.", (99999,))])

    def set_impl(self, impl: str) -> "ResolutionMultigrid":
        """Switch every smoothing step to ``"fast"`` or ``"reference"`` (in place)."""
        self.impl = check_impl(impl)
        for m in self.modules():
            if isinstance(m, SmoothingStep):
                m.impl = impl
            elif isinstance(m, (KernelConv2d, ConvBNReLU)):  # the C++ kernels belong to the
                m.use_kernels = impl == "fast"                 # fast path
        if isinstance(getattr(self, "config", None), dict):
            self.config["impl"] = impl
        return self

    def forward_levels(self, x: Tensor, indices: Iterable[int]) -> list[Tensor]:
        """Algorithms 1 and 3: ``f_1`` from the image, ``u_1 = 0``; on each level ``l`` the
        smoother, then the FAS restriction to level ``l + 1``. Returns ``u_l`` after the
        smoother of each level in ``indices``, and stops after the last of them."""
        wanted = sorted(set(indices))
        x_in, x = x, input_layout(self, x)
        f = self.data(x)
        u = zero_features(self, f)        # line 1: u_1 = 0, so A_1(u_1) = 0
        A_u = u
        levels = {}
        for l in range(wanted[-1] + 1):
            u = self.smooth(l, f, u, A_u)                             # smoothing on level l
            if l in wanted:
                levels[l] = output_layout(x_in, x, u)
            if l < wanted[-1]:
                u, f, A_u = self.restrict(l, u, f)                    # to level l + 1
        return [levels[l] for l in indices]

    @segment("step", owner=lambda self, x: self.stem)
    def data(self, x: Tensor) -> Tensor:
        """``f_1``: the stem's map of the image."""
        return self.stem(x)

    @segment("level", owner=lambda self, l, *inputs: self.smoothers[l])
    def smooth(self, l: int, f: Tensor, u: Tensor, A_u: Tensor | None) -> Tensor:
        """The smoother of level ``l`` (``nu`` steps with ``A_l``, ``B_l``, or a SiC V-cycle)."""
        return self.smoothers[l](f, u, A_u)

    @segment("step", owner=lambda self, l, *inputs: self.transfers[l], keep=2)
    def restrict(self, l: int, u: Tensor, f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """FAS to level ``l + 1``, eq. (8)-(9): ``u' = Pi(u)``, ``f' = R(f - A u) + A'(u')``;
        also returns ``A'(u')``, which the first smoothing step on level ``l + 1`` reuses (under
        ``recompute="step"`` it is ``None``: computed again there)."""
        return self.transfers[l](u, residual(f, u, self.smoothers[l].A), self.smoothers[l + 1].A)


def init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, BN to identity: as for ResNet."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
