"""The one check of sizes and numbers that come from outside (command lines, config.json,
preprocessing.json, manifests, run records): refused before anything is allocated.

Every entry point that turns such a value into memory (a model's classes, an input image's side, a
batch) goes through :func:`check_size` / :func:`check_input`; ``MGIAD_ALLOW_LARGE_MODELS=1`` lifts
the limits for a user who means it. :func:`finite` refuses NaN, infinities, strings and booleans
where a number is recorded.
"""
from __future__ import annotations

import math
import os
from typing import Any

__all__ = ["ALLOW_LARGE", "MAX_IMAGE_SIZE", "MAX_BATCH_SIZE", "MAX_INPUT_VALUES", "large_allowed",
           "limit_hint", "check_size", "check_input", "finite"]

ALLOW_LARGE = "MGIAD_ALLOW_LARGE_MODELS"
MAX_IMAGE_SIZE = 4096           # side of a square model input, in pixels
MAX_BATCH_SIZE = 65536          # images in one batch
MAX_INPUT_VALUES = 1 << 28      # batch x channels x side x side: 1 GiB of float32 input


def large_allowed() -> bool:
    """Whether ``MGIAD_ALLOW_LARGE_MODELS=1`` lifts the limits."""
    return os.environ.get(ALLOW_LARGE) == "1"


def limit_hint() -> str:
    return f"; set {ALLOW_LARGE}=1 if you mean it"


def check_size(name: str, value: Any, limit: int) -> int:
    """``value`` as a positive integer not above ``limit`` (unless the limits are lifted);
    ``ValueError`` naming ``name`` otherwise (a bool, a float, a string, zero, negative)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > limit and not large_allowed():
        raise ValueError(f"{name}={value:,} is beyond the limit {limit:,}{limit_hint()}")
    return value


def check_input(batch: int, channels: int, image_size: int, what: str = "the input") -> None:
    """Refuse a batch of ``batch x channels x image_size x image_size`` values beyond the limits."""
    check_size("batch size", batch, MAX_BATCH_SIZE)
    check_size("input channels", channels, 1 << 16)
    check_size("image size", image_size, MAX_IMAGE_SIZE)
    values = batch * channels * image_size * image_size
    if values > MAX_INPUT_VALUES and not large_allowed():
        raise ValueError(f"{what} of {batch:,} x {channels} x {image_size} x {image_size} = "
                         f"{values:,} values is beyond the limit {MAX_INPUT_VALUES:,}; use a "
                         f"smaller batch or image size{limit_hint()}")


def finite(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool, not a string);
    ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
