"""Build (first use, with ninja) and load the C++ operators ``torch.ops.mgiad_kernels.*``.

The build is cached under ``$MGIAD_KERNELS_CACHE`` (default ``~/.cache/mgiad/kernels``), in a folder
named after a hash of the sources and torch's version, so that checkouts with different sources do
not rebuild each other's. Where no compiler is present or the build fails, ``load()`` warns once, in
one line, and returns False; the callers then use PyTorch's convolutions. MGIAD_KERNELS_VERBOSE=1
shows the build's commands and compiler output.
"""
import functools
import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).parent / "csrc"
def sources() -> list[str]:
    """Every translation unit in csrc/ (each operator family registers itself)."""
    return sorted(str(path) for path in SOURCE_DIR.glob("*.cpp"))


CFLAGS = ("-O3", "-fopenmp")


def _source_hash() -> str:
    digest = hashlib.sha256(torch.__version__.encode())
    for path in sorted(SOURCE_DIR.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_directory() -> Path:
    base = os.environ.get("MGIAD_KERNELS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mgiad" / "kernels"
    return Path(base) / _source_hash()


def missing_tool() -> str | None:
    """Why the extension cannot be built here (no compiler, no ninja), or None."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) found"
    if not cpp_extension.is_ninja_available():
        return "ninja not found"
    return None


@functools.cache
def load() -> bool:
    """Builds if needed and loads the operators; False (after one warning) where that is impossible."""
    reason = missing_tool()
    if reason is None and hasattr(torch.ops.mgiad_kernels, "conv3x3_forward"):
        return True  # loaded already (e.g. by an earlier load() whose cache was cleared)
    if reason is None:
        try:
            _build_and_load()
        except Exception as error:  # a failed build must leave the PyTorch path working
            first_line = (str(error).strip().splitlines() or [""])[0][:160]
            reason = f"build failed ({type(error).__name__}: {first_line}; MGIAD_KERNELS_VERBOSE=1 shows the compiler's output)"
    if reason is not None:
        warnings.warn(f"mgiad.kernels: {reason}; using PyTorch's convolutions instead", RuntimeWarning, stacklevel=3)
        return False
    return True


def _build_and_load() -> None:
    from torch.utils import cpp_extension

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "mgiad_kernels.so").exists():
        print(f"mgiad.kernels: building the C++ kernels (once per machine and version, about a "
              f"minute) in {directory}", file=sys.stderr, flush=True)
    cpp_extension.load(name="mgiad_kernels", sources=sources(),
                       extra_cflags=list(CFLAGS), extra_ldflags=["-fopenmp"], build_directory=str(directory),
                       is_python_module=False, verbose=os.environ.get("MGIAD_KERNELS_VERBOSE", "0") != "0")
