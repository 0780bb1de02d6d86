"""Whether the kernels can run here, and with which instruction set."""
import functools
import os

import torch

from . import build

ISA_NAMES = {0: "none", 1: "avx2", 2: "avx512"}


def enabled() -> bool:
    """False when the environment variable MGIAD_KERNELS is "0"."""
    return os.environ.get("MGIAD_KERNELS", "1") != "0"


@functools.cache
def cpu_isa() -> int:
    """Best instruction set of this CPU that the kernels use: 2 AVX-512, 1 AVX2 + FMA, 0 neither."""
    return int(torch.ops.mgiad_kernels.cpu_isa()) if build.load() else 0


def isa() -> int:
    """The instruction set used: the CPU's best, capped by MGIAD_KERNELS_ISA ("avx2" or "avx512")."""
    names = {name: level for level, name in ISA_NAMES.items()}
    cap = names.get(os.environ.get("MGIAD_KERNELS_ISA", "avx512").lower(), 2)
    return min(cpu_isa(), cap)


def available() -> bool:
    """Kernels enabled, compiler present, extension built and loaded, CPU with AVX2 + FMA or better."""
    return enabled() and build.load() and isa() > 0
