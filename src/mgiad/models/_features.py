"""``features_only``: a model that returns the feature maps of its resolution levels, with timm's
names and semantics (``create_model(name, features_only=True, out_indices=(0, 1, 2))``).

    model = mgiad.create_model("mgiad", features_only=True, out_indices=(1, 2))
    maps = model(x)                       # [level 1 (N, C_1, H/2, W/2), level 2 (N, C_2, H/4, W/4)]
    model.feature_info.channels()         # [C_1, C_2]
    model.feature_info.reduction()        # [2, 4]   (x4 more with the ImageNet stem)
    model.feature_info.module_names()     # ['smoothers.1', 'smoothers.2']

Level ``l`` is the ``l``-th entry of the classifier's ``feature_info``: ``u_l`` after the level's
smoother for MgNet and MGiaD, the output of the level's last block for ResNet and MGIC. The
model keeps its parameter names (less the classifier, which it drops), so a classifier's state
dict loads into it with ``strict=False``; it runs only up to the last level asked for.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["FeatureInfo", "features_only"]


class FeatureInfo:
    """The levels a ``features_only`` model returns: ``channels()``, ``reduction()``,
    ``module_names()`` (all of ``out_indices``, or of the position ``idx`` / positions given),
    ``get_dicts()``, ``out_indices``; ``info[i]`` is the ``i``-th level's dict."""

    def __init__(self, feature_info: list[dict], out_indices: Sequence[int]):
        self.info = [dict(d) for d in feature_info]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (tuple, list)):
            return [self.info[self.out_indices[i]][key] for i in idx]
        return self.info[self.out_indices[idx]][key]

    def get_dicts(self, keys: Sequence[str] | None = None, idx=None) -> list[dict]:
        chosen = self.out_indices if idx is None else [self.out_indices[i] for i in idx]
        return [{k: self.info[i][k] for k in (keys or self.info[i])} for i in chosen]

    def channels(self, idx=None):
        return self.get("num_chs", idx)

    def reduction(self, idx=None):
        return self.get("reduction", idx)

    def module_names(self, idx=None):
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo(out_indices={self.out_indices}, channels={self.channels()})"


def check_out_indices(out_indices, levels: int) -> tuple[int, ...]:
    """``out_indices`` as non-negative level numbers (negative ones count from the last level,
    as in timm); ``ValueError`` naming the levels otherwise."""
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices,)
    try:
        values = [int(i) for i in out_indices if not isinstance(i, bool) and i == int(i)]
        ok = len(values) == len(out_indices) and len(values) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or not all(-levels <= i < levels for i in values):
        raise ValueError(f"out_indices must name resolution levels 0..{levels - 1} (or -{levels}"
                         f"..-1 from the last), got {out_indices!r}")
    normalised = tuple(i % levels for i in values)
    if len(set(normalised)) != len(normalised):
        raise ValueError(f"out_indices names a level twice: {out_indices!r}")
    return normalised


def features_only(model: nn.Module, out_indices: Sequence[int] | None = None) -> nn.Module:
    """Turn ``model`` (in place) into a feature extractor returning the maps of ``out_indices``
    (default: every level) as a list; its classifier is dropped."""
    indices = (tuple(range(len(model.feature_info))) if out_indices is None
               else check_out_indices(out_indices, len(model.feature_info)))
    model.reset_classifier(0, "")
    model.feature_info = FeatureInfo(model.feature_info, indices)
    model.feature_indices = indices
    if isinstance(getattr(model, "config", None), dict):
        model.config.update(features_only=True, out_indices=list(indices))
    return model
