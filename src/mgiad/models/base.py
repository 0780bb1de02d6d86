"""The interface every architecture shares, with timm's names and semantics.

``forward(x) = forward_head(forward_features(x))``; ``forward_head(x, pre_logits=True)`` stops
before the linear layer (``num_features`` wide); ``num_classes=0`` / ``reset_classifier(0)`` leave
no linear layer, so the model returns pooled features; ``global_pool`` (``"avg"``, ``"max"``,
``"avgmax"``, ``""``), ``drop_rate`` (dropout before the classifier) and ``drop_path_rate``
(stochastic depth) are create_model arguments. ``feature_info`` lists the resolution levels
(``num_chs``, ``reduction``, ``module``); ``create_model(..., features_only=True, out_indices=...)``
(:mod:`._features`) returns their feature maps. ``set_grad_checkpointing``, ``group_matcher``,
``no_weight_decay`` and :func:`param_groups_weight_decay` serve training code written for timm.

``torch.jit.script`` is not supported: a layer picks its implementation (C++ kernels, the
memory-lean fast path, recomputation) per call in Python. ``torch.jit.trace``, ``torch.export``,
``torch.fx`` and ``torch.compile`` work, and so does ``mgiad export``.
"""
from __future__ import annotations

from typing import Any, Iterable

from torch import Tensor, nn

from ..layers import Classifier, check_positive_int, check_rate
from ..layers.dispatch import gradients_in_parameter_layout, run_blocks

__all__ = ["ImageClassifier", "param_groups_weight_decay", "check_num_classes"]


def check_num_classes(value) -> int:
    """``num_classes``: a positive integer, or 0 for a model without classifier."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_classes must be a non-negative integer (0: no classifier, the "
                         f"model returns pooled features), got {value!r}")
    return value


class ImageClassifier(nn.Module):
    """Stem, resolution levels, head. Subclasses build ``stem`` and their levels, then call
    :meth:`init_head` with the channels of each level and the names of the modules whose outputs
    are the levels' features; they implement ``forward_levels(x, indices)``."""

    grad_checkpointing = False
    feature_indices: tuple[int, ...] | None = None  # set by features_only

    def __init__(self, num_classes: int, in_chans: int, global_pool: str = "avg",
                 drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.global_pool = global_pool
        self.drop_rate = check_rate("drop_rate", drop_rate)

    def init_head(self, channels: list[int], modules: list[str]) -> None:
        """The classifier on the last level, and ``feature_info`` (one entry per level); called
        once the other modules exist."""
        reduction = 4 if self.stem.kind == "imagenet" else 1
        self.feature_info = [dict(num_chs=c, reduction=reduction * 2 ** l, module=m)
                             for l, (c, m) in enumerate(zip(channels, modules))]
        self.num_features = self.head_hidden_size = channels[-1]
        self.head = Classifier(channels[-1], self.num_classes, self.global_pool, self.drop_rate)
        # gradients in their parameters' strides: no DDP bucket-view warning and copy
        gradients_in_parameter_layout(self)

    # ------------------------------------------------------------------------------ forward
    def forward_levels(self, x: Tensor, indices: Iterable[int]) -> list[Tensor]:
        """The features of the resolution levels ``indices`` (``feature_info`` order), in the
        memory format of ``x``; stops after the last level asked for. This one is for models
        of ``stem`` + ``blocks`` (``nn.Sequential``) whose level ``l`` ends with block
        ``stage_ends[l]``; the multigrid models have their own."""
        wanted = sorted(set(indices))
        _, kept = run_blocks(self, self.blocks, self.stem(x),
                             tuple(self.stage_ends[l] for l in wanted))
        levels = dict(zip(wanted, kept))
        return [levels[l] for l in indices]

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature map of the last level (unpooled), in the memory format of ``x``."""
        return self.forward_levels(x, (len(self.feature_info) - 1,))[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooling, dropout, classifier; ``pre_logits=True``: the pooled features."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor):
        if self.feature_indices is not None:  # features_only: the levels' feature maps
            return self.forward_levels(x, self.feature_indices)
        return self.forward_head(self.forward_features(x))

    # --------------------------------------------------------------------------- classifier
    def get_classifier(self) -> nn.Module:
        """The linear classifier (``nn.Identity`` when ``num_classes=0``)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, untrained classifier for ``num_classes`` (0: none, the model returns pooled
        features); ``global_pool``: another pooling (``None`` keeps the current one)."""
        self.num_classes = check_num_classes(num_classes)
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = Classifier(self.num_features, num_classes, self.global_pool, self.drop_rate)
        gradients_in_parameter_layout(self.head)
        if isinstance(getattr(self, "config", None), dict):
            self.config.update(num_classes=num_classes, global_pool=self.global_pool)

    # ----------------------------------------------------------------------------- training
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Store less for backward and run parts of the forward again (timm's name)."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to train without weight decay beyond timm's rule (every 1-D
        parameter: BatchNorm scales and shifts, biases), which :func:`param_groups_weight_decay`
        applies: none. The paper's recipe (``mgiad train``) decays every parameter."""
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Regular expressions grouping parameter names, stem first, then one group per block
        (``coarse``: per resolution level), as timm's layer-wise learning-rate decay reads them;
        the head is what no expression matches. This one is for ``stem`` + ``blocks``."""
        if not coarse:
            return dict(stem=r"^stem\.", blocks=r"^blocks\.(\d+)\.")
        stages, start = [], 0
        for level, end in enumerate(self.stage_ends):
            stages += [(rf"^blocks\.{i}\.", (level,)) for i in range(start, end + 1)]
            start = end + 1
        return dict(stem=r"^stem\.", blocks=stages)

    def set_drop_path(self, modules: list[nn.Module], rate: float) -> None:
        """Stochastic depth rising linearly from 0 (first module) to ``rate`` (last), as timm
        spreads ``drop_path_rate`` over blocks; each module's ``drop_path`` is its rate."""
        rate = check_rate("drop_path_rate", rate)
        for i, m in enumerate(modules):
            m.drop_path = rate * i / max(1, len(modules) - 1)

    def __prepare_scriptable__(self):
        raise TypeError(f"torch.jit.script does not support {type(self).__name__}: its layers "
                        "choose their implementation per call in Python; use torch.jit.trace on "
                        "model.eval(), torch.export, or `mgiad export`")

    def save_pretrained(self, directory):
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (see :mod:`mgiad.models._hub`);
        ``mgiad.from_pretrained(directory)`` rebuilds the model."""
        from ._hub import save_pretrained
        return save_pretrained(self, directory)


def param_groups_weight_decay(model: nn.Module, weight_decay: float = 1e-4,
                              no_weight_decay_list: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Two optimizer groups, as timm's function of this name: 1-D parameters, biases and the
    names in ``no_weight_decay_list`` (and ``model.no_weight_decay()``) without weight decay,
    the others with ``weight_decay``. Frozen parameters are left out."""
    skip = set(no_weight_decay_list) | set(getattr(model, "no_weight_decay", set)())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
