"""``create_model``: build a registered architecture, or a pretrained name with its weights.

``create_model`` stores the resolved arguments on the model as ``model.config``
(JSON-serialisable), so it can be rebuilt exactly. It also takes the names of the pretrained
weights shipped with mgiad (``"<architecture>.<tag>"``, ``mgiad.list_pretrained()``):
``create_model(name, pretrained=True)`` builds the recorded architecture and loads the weights
(:mod:`._pretrained`).
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ._features import features_only as _features_only
from ._pretrained import create_pretrained
from ._registry import create_registered, is_registered

__all__ = ["create_model"]


def create_model(name: str, pretrained: bool = False, features_only: bool = False,
                 out_indices: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; unknown names or arguments raise ``ValueError``.

    As timm's: the model is in train mode (``nn.Module``'s default; call ``.eval()`` to
    predict). ``features_only=True`` returns the feature maps of the resolution levels
    ``out_indices`` (default: all) as a list, with ``model.feature_info`` (:mod:`._features`).

    ``name`` may also be a pretrained name (``mgiad.list_pretrained()``): the architecture it
    records is built and, with ``pretrained=True``, its weights are loaded (offline, from the
    package); the model then has ``pretrained_cfg`` and ``preprocessing``. ``kwargs`` must agree
    with the recorded architecture, except ``num_classes`` (a new classifier, as in timm) and the
    execution options ``impl`` / ``recompute``. See :func:`mgiad.models._pretrained.create_pretrained`.
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects the levels of features_only=True; pass both")
    if pretrained or not is_registered(name):
        model = create_pretrained(name, pretrained=bool(pretrained), **kwargs)  # or raises
    else:
        model = create_registered(name, **kwargs)
    return _features_only(model, out_indices) if features_only else model
