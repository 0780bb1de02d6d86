"""Whether the kernels can run here, and with which instruction set."""
import contextlib
import functools
import os

import torch

from . import build

ISA_NAMES = {0: "none", 1: "avx2", 2: "avx512"}


OFF, ON = ("0", "false", "off", "no"), ("", "1", "true", "on", "yes")


@functools.cache
def _warn_once(message: str) -> None:
    build.warn_one_line(message)


def flag(name: str) -> bool:
    """An on/off environment variable, on unless set to 0, false, off or no (a value that is
    neither warns once and counts as on)."""
    value = os.environ.get(name, "1").strip().lower()
    if value not in OFF + ON:
        _warn_once(f"{name}={value!r} is neither on (1, true, on, yes) nor off (0, false, off, no); "
                   "it stays on")
    return value not in OFF


def enabled() -> bool:
    """False when the environment variable MGIAD_KERNELS is 0, false, off or no."""
    return flag("MGIAD_KERNELS")


@functools.cache
def cpu_isa() -> int:
    """Best instruction set of this CPU that the kernels use: 2 AVX-512, 1 AVX2 + FMA, 0 neither."""
    return int(torch.ops.mgiad_kernels.cpu_isa()) if build.load() else 0


def isa() -> int:
    """The instruction set used: the CPU's best, capped by MGIAD_KERNELS_ISA ("avx2" or "avx512");
    0 with MGIAD_KERNELS off (nothing is built then)."""
    if not enabled():
        return 0
    names = {name: level for level, name in ISA_NAMES.items() if level}
    value = os.environ.get("MGIAD_KERNELS_ISA", "avx512").strip().lower()
    if value not in names:
        _warn_once(f"MGIAD_KERNELS_ISA={value!r} is not one of {', '.join(names)}; using the "
                   "CPU's best")
    return min(cpu_isa(), names.get(value, 2))


def available() -> bool:
    """Kernels enabled, compiler present, extension built and loaded, CPU with AVX2 + FMA or better."""
    return enabled() and build.load() and isa() > 0


_trace_kernels = False


@contextlib.contextmanager
def trace_kernels():
    """Within this block ``torch.jit.trace`` records the kernels' operators (and the inference
    epilogues) instead of PyTorch's convolutions: the trace becomes an executor of the model as it
    runs here (:func:`mgiad.deploy.optimize_for_inference`). Not for export: ONNX and other
    runtimes do not know the operators. Loads the kernels first (their loading is not traceable)."""
    global _trace_kernels
    available() and cpu_isa()
    previous, _trace_kernels = _trace_kernels, True
    try:
        yield
    finally:
        _trace_kernels = previous


def tracing_for_kernels() -> bool:
    """Inside :func:`trace_kernels`, while ``torch.jit.trace`` runs."""
    return _trace_kernels and torch.jit.is_tracing()
