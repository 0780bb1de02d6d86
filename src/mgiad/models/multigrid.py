"""The resolution multigrid shared by MgNet and MGiaD: the coarsening leg of a V-cycle with FAS.

Algorithm 1 (MgNet) and algorithm 3 (MGiaD) differ only in the smoother used on a resolution level
(a stationary iteration with ``A_l``, ``B_l``, or the channel V-cycle ``SiC``), so both subclass
:class:`ResolutionMultigrid` and provide the smoothers.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..layers import (Classifier, ConvBNReLU, FASTransfer, KernelConv2d, SmoothingStep, Stem,
                     check_impl, check_positive_int, check_recompute, residual, segment)
from ..layers.dispatch import input_layout, zero_features


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


class ImageClassifier(nn.Module):
    """Common interface: ``forward_features`` -> ``head``; ``num_classes``, ``in_chans``."""

    head: Classifier

    def __init__(self, num_classes: int, in_chans: int):
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_chans = check_positive_int("in_chans", in_chans)

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear classifier, e.g. to fine-tune on a dataset with other classes."""
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.head = Classifier(self.head.fc.in_features, num_classes)

    def save_pretrained(self, directory):
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (see :mod:`mgiad.models._hub`);
        ``mgiad.from_pretrained(directory)`` rebuilds the model."""
        from ._hub import save_pretrained
        return save_pretrained(self, directory)


class ResolutionMultigrid(ImageClassifier):
    """Stem, one smoother per resolution level, FAS transfers between levels, classifier.

    Each smoother is a module with a convolution ``A`` (the level's ``A_l``) and a forward
    ``smoother(f, u, A_u) -> u`` where ``A_u = A(u)`` for the given ``u``. ``impl`` picks the
    smoothing steps' implementation (:class:`~mgiad.layers.SmoothingStep`); parameters, buffers
    and results are the same for both. ``recompute`` (``False``, ``"level"``, ``"step"``; see
    :mod:`mgiad.layers.recompute`) stores less for backward and runs parts of the forward again.
    ``transfer_norm``: BN + ReLU after ``R`` and ``Pi`` (the paper's text), or none of them and a
    ReLU on ``f - A u`` before ``R`` (the authors' code; see :class:`~mgiad.layers.FASTransfer`).
    """

    def __init__(self, num_classes: int, in_chans: int, stem: str, channels: Sequence[int],
                 smoothers: Sequence[nn.Module], impl: str = "fast", recompute: bool | str = False,
                 transfer_norm: bool = True):
        super().__init__(num_classes, in_chans)
        self.impl = check_impl(impl)
        self.channels = list(channels)
        self.stem = Stem(in_chans, channels[0], stem)
        self.smoothers = nn.ModuleList(smoothers)
        # R_l^{l+1}, Pi_l^{l+1}: 3x3, stride 2, depthwise with channel multiplier c_{l+1}/c_l
        self.transfers = nn.ModuleList(
            FASTransfer(c, c_next, kernel_size=3, stride=2, groups=c, norm=transfer_norm)
            for c, c_next in zip(channels[:-1], channels[1:]))
        self.head = Classifier(channels[-1], num_classes)
        init_weights(self)
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

    def forward_features(self, x: Tensor) -> Tensor:
        """Algorithms 1 and 3: ``f_1`` from the image, ``u_1 = 0``; on each level ``l`` the
        smoother, then the FAS restriction to level ``l + 1``."""
        f = self.data(input_layout(self, x))
        u = zero_features(self, f)        # line 1: u_1 = 0, so A_1(u_1) = 0
        A_u = u
        for l in range(len(self.smoothers)):
            u = self.smooth(l, f, u, A_u)                             # smoothing on level l
            if l + 1 < len(self.smoothers):
                u, f, A_u = self.restrict(l, u, f)                    # to level l + 1
        return u

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
