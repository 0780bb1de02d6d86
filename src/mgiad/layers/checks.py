"""Argument checks and "is this being traced?", shared by every layer (a leaf)."""
from __future__ import annotations

import torch

from ..kernels import runtime

__all__ = ["is_tracing", "check_positive_int", "check_divisible", "IMPLS", "check_impl"]


def is_tracing() -> bool:
    """True under torch.jit.trace or torch.fx symbolic tracing, where Python checks on tensor
    shapes would be baked into (or break) the trace; False when tracing the model's own executor
    (:func:`mgiad.kernels.runtime.trace_kernels`), which records the kernels as they run."""
    if torch.jit.is_tracing():
        return not runtime.tracing_for_kernels()
    try:
        from torch.fx._symbolic_trace import is_fx_symbolic_tracing
        return is_fx_symbolic_tracing()
    except Exception:  # private helper renamed: fall back to the flag it reads
        import torch.fx._symbolic_trace as fx_trace
        return bool(getattr(fx_trace, "_is_fx_tracing_flag", False))


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_divisible(name: str, value: int, by: int, what: str) -> None:
    if value % by:
        raise ValueError(f"{name}={by} does not divide the {value} channels of {what}")


IMPLS = ("fast", "reference")


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {list(IMPLS)}, got {impl!r}")
    return impl
