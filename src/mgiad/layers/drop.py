"""Stochastic depth (``drop_path``): per sample, drop a residual branch while training.

timm's ``drop_path_rate`` semantics: a branch ``b`` added to ``x`` becomes ``x + b * m / (1 - p)``
with ``m`` a per-sample Bernoulli(1 - p) mask; in eval mode, or with ``p = 0``, ``x + b``.
"""
from __future__ import annotations

from torch import Tensor

__all__ = ["drop_path", "check_rate"]


def check_rate(name: str, value) -> float:
    """A probability in ``[0, 1)``; ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """``x`` with whole samples zeroed with probability ``p`` and the rest scaled by ``1/(1-p)``."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep.div_(1.0 - p)
