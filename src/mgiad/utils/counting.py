"""Weights, multiply-adds and FLOPs of a model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_flops", "FlopCount"]


def count_parameters(model: nn.Module, exclude_head: bool = False) -> int:
    """Number of weights: every distinct ``nn.Parameter`` (shared tensors count once).

    ``exclude_head`` leaves out the linear classifier (``model.get_classifier()``), as the paper's
    Fashion-MNIST counts for MgNet and MGiaD do (table 2).
    """
    params = {id(p): p.numel() for p in model.parameters()}
    if exclude_head:
        for p in model.get_classifier().parameters():
            params.pop(id(p), None)
    return sum(params.values())


@dataclass(frozen=True)
class FlopCount:
    """Cost of one forward pass of one image: ``flops = 2 * macs`` (the paper's GFLOPs)."""

    macs: int
    flops: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def __repr__(self) -> str:
        def short(n: int) -> str:
            for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
                if n >= size:
                    return f"{n / size:.4g}{unit}"
            return str(n)
        return f"FlopCount(macs={short(self.macs)}, flops={short(self.flops)})"


def count_flops(model: nn.Module, input_size: int | Sequence[int] = 32) -> FlopCount:
    """Multiply-adds and FLOPs of a forward pass on one image, counted by ``torch.utils.flop_counter``.

    ``input_size`` is the image side (``in_chans`` taken from the model), ``(H, W)``, ``(C, H, W)``
    or ``(N, C, H, W)``; the count is per image. Only convolutions and linear layers count
    (BatchNorm, ReLU, additions and pooling are not multiply-adds of weights).
    """
    size = [input_size] if isinstance(input_size, int) else list(input_size)
    if len(size) == 1:
        size = size * 2
    if len(size) == 2:
        size = [getattr(model, "in_chans", 3), *size]
    if len(size) == 3:
        size = [1, *size]
    if len(size) != 4 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"input_size must be H, (H, W), (C, H, W) or (N, C, H, W); got {input_size!r}")
    param = next(model.parameters(), None)
    x = torch.zeros(size, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = counter.get_total_flops() // size[0]
    return FlopCount(macs=flops // 2, flops=flops)
