"""The largest training batch that fits a memory budget (``mgiad bench --max-batch 16GiB``).

Training memory is affine in the batch size: weights, gradients and optimiser state are fixed,
activations grow with every image. Two measurements of the peak (``mgiad bench``'s memory
method, at the benchmark's batch size and at a quarter of it) give the intercept and the bytes per
image; the largest batch is where the line meets the budget. On CUDA the prediction is then
checked by a run at that batch (and lowered until it fits); on the CPU it is an extrapolation,
reported as such, since a run at, say, batch 600 would need the budget itself in RAM.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"16GiB"``, ``"80GB"``, ``"24000MB"``, ``"1.5TiB"`` or plain bytes -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"memory budget {text!r} is not a size such as 16GiB, 80GB or 24000MB")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass
class BatchFit:
    """``bytes(batch) = fixed + per_image * batch`` and the largest batch within ``budget``."""
    budget: int
    fixed: float
    per_image: float
    measured: dict[int, float]
    max_batch: int
    checked: bool  # a run at max_batch fitted (CUDA); False: extrapolated
    tried: bool = False  # runs were made but none fitted within the checks

    def describe(self) -> str:
        points = ", ".join(f"batch {b}: {v / 2**20:,.0f} MiB" for b, v in self.measured.items())
        how = ("checked by a run" if self.checked else
               "not confirmed: no checked run fitted" if self.tried else "extrapolated")
        return (f"{self.max_batch} images within {self.budget / 2**30:,.2f} GiB ({how}; "
                f"{self.per_image / 2**20:,.2f} MiB per image + {self.fixed / 2**20:,.0f} MiB; "
                f"{points})")


def fit_largest_batch(measure: Callable[[int], float], budget: int, batch_size: int,
                      check: bool = False, max_checks: int = 4) -> BatchFit:
    """``measure(batch)``: training bytes at ``batch`` (weights included). Fits the line through
    ``batch_size // 4`` and ``batch_size``; with ``check``, runs at the prediction and steps down
    by 5% until it fits."""
    small = max(1, batch_size // 4)
    if small == batch_size:
        raise ValueError("--max-batch needs --batch-size of at least 2 (it fits two batch sizes)")
    measured = {small: measure(small), batch_size: measure(batch_size)}
    per_image = max((measured[batch_size] - measured[small]) / (batch_size - small), 1.0)
    fixed = measured[small] - per_image * small
    batch = max(0, math.floor((budget - fixed) / per_image))
    checked = tried = False
    if check and batch > 0:
        tried = True
        for _ in range(max_checks):
            measured[batch] = used = measure(batch)
            if used <= budget:
                checked = True
                break
            batch = max(1, math.floor(batch * 0.95))
    return BatchFit(budget, fixed, per_image, measured, batch, checked, tried and not checked)
