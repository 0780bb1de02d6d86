"""glibc malloc tuning for training on the CPU (:func:`tune_malloc`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "malloc_tuned"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_malloc_tuned: bool | None = None


def tune_malloc() -> bool:
    """Keep freed feature maps in the heap for reuse instead of returning them to the kernel.

    glibc serves allocations above 32 MiB (MGiaD's 192-channel 32x32 maps at batch 64 are 48 MiB)
    with ``mmap`` and unmaps them on free, so each training step page-faults them in again:
    ~20% of a CPU step in system time. ``mallopt`` here stops using ``mmap`` and trimming, so
    the process keeps its peak heap (its resident size stays at the peak). The CLI calls this
    before training, evaluating and benchmarking; ``MGIAD_TUNE_MALLOC=0`` turns it off.
    Returns whether it applied (glibc only; a no-op elsewhere). Process-wide; call it once.
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        if os.environ.get("MGIAD_TUNE_MALLOC", "1") != "0" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _malloc_tuned = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
            except (OSError, AttributeError):  # not glibc
                _malloc_tuned = False
    return _malloc_tuned


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has applied in this process."""
    return bool(_malloc_tuned)
