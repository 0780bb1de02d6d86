"""Build (first use, with ninja) and load the C++ operators ``torch.ops.mgiad_kernels.*``.

The build is cached under ``$MGIAD_KERNELS_CACHE`` (default ``~/.cache/mgiad/kernels``), in a folder
named after a hash of the sources' contents and torch's version, so that checkouts with different
sources do not rebuild each other's and checkouts with identical ones share one build. Where no
compiler is present or the build fails, ``load()`` warns once, in one line (:func:`warn_one_line`),
and returns False; the callers then use PyTorch's convolutions. MGIAD_KERNELS_VERBOSE=1 shows the
build's commands and compiler output.

Nothing a killed or crashed process leaves behind can hang or crash a later one:

* one process builds at a time, under an ``flock`` on ``<hash>.lock`` beside the folder, which the
  kernel releases when its holder dies (Ctrl-C, ``timeout``, OOM, a cancelled job); the others wait,
  say what for, and give up after ``$MGIAD_KERNELS_BUILD_TIMEOUT`` seconds (default 900) with a
  warning and PyTorch's convolutions;
* each build runs in a fresh temporary folder, renamed into place only when it succeeded;
* ``manifest.json`` records the library's size and SHA-256: a library that does not match (a
  truncated copy, a full disk) is never loaded but rebuilt.
"""
import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: builds still go to their own temporary folders
    fcntl = None

LIBRARY = "mgiad_kernels.so"

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
    if hasattr(torch.ops.mgiad_kernels, "conv3x3_forward"):
        return True  # loaded already (e.g. by an earlier load() whose cache was cleared)
    if verified(build_directory()):  # a good build needs no compiler, no lock, no write access
        try:
            torch.ops.load_library(str(build_directory() / LIBRARY))
            return True
        except Exception:  # e.g. built against other libraries: rebuild below where possible
            pass
    reason = missing_tool()
    if reason is None:
        try:
            _build_and_load()
        except BuildLockTimeout as error:
            reason = str(error)
        except Exception as error:  # a failed build must leave the PyTorch path working
            first_line = (str(error).strip().splitlines() or [""])[0][:160]
            reason = f"build failed ({type(error).__name__}: {first_line}; MGIAD_KERNELS_VERBOSE=1 shows the compiler's output)"
    if reason is not None:
        warn_one_line(f"{reason}; using PyTorch's convolutions instead")
        return False
    return True


def warn_one_line(message: str) -> None:
    """A ``RuntimeWarning`` that prints as one line, ``mgiad.kernels:0: RuntimeWarning: ...``:
    attributed to no source line (``warnings.warn`` would print the caller's line under it)."""
    warnings.warn_explicit(message, RuntimeWarning, "mgiad.kernels", 0, module="mgiad.kernels")


class BuildLockTimeout(RuntimeError):
    """Another process held the build lock for longer than the timeout."""


def lock_timeout() -> float:
    try:
        return float(os.environ.get("MGIAD_KERNELS_BUILD_TIMEOUT", "900"))
    except ValueError:
        return 900.0


@contextlib.contextmanager
def exclusive(path: Path, timeout: float | None = None):
    """Hold an ``flock`` on ``path`` (created if missing): released by the kernel when this process
    ends in any way, so a killed holder never blocks the next one."""
    timeout = lock_timeout() if timeout is None else timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            deadline, said = time.monotonic() + timeout, False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BuildLockTimeout(
                            f"gave up after {timeout:.0f} s waiting for another process building "
                            f"the kernels (lock {path}; MGIAD_KERNELS_BUILD_TIMEOUT sets the wait)") from None
                    if not said:
                        print(f"mgiad.kernels: waiting for another process that builds the kernels "
                              f"(lock {path}; at most {timeout:.0f} s, then PyTorch's convolutions)",
                              file=sys.stderr, flush=True)
                        said = True
                    time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(directory: Path) -> bool:
    """``directory`` holds a library whose size and SHA-256 are those recorded when it was built."""
    library, manifest = directory / LIBRARY, directory / "manifest.json"
    try:
        recorded = json.loads(manifest.read_text())
        return (library.stat().st_size == recorded["size"]
                and _digest(library) == recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _compile(directory: Path) -> None:
    """Compile (and load) the operators in ``directory`` with torch's extension builder."""
    from torch.utils import cpp_extension
    cpp_extension.load(name="mgiad_kernels", sources=sources(),
                       extra_cflags=list(CFLAGS), extra_ldflags=["-fopenmp"], build_directory=str(directory),
                       is_python_module=False, verbose=os.environ.get("MGIAD_KERNELS_VERBOSE", "0") != "0")


def _build_and_load() -> None:
    final = build_directory()
    if verified(final):
        torch.ops.load_library(str(final / LIBRARY))
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(final.parent / f"{final.name}.lock"):
        if verified(final):  # built by the process this one waited for
            torch.ops.load_library(str(final / LIBRARY))
            return
        if (final / LIBRARY).exists():
            print(f"mgiad.kernels: {final / LIBRARY} does not match its build record (truncated or "
                  "corrupt, or built before records were kept): building it again",
                  file=sys.stderr, flush=True)
        else:
            print(f"mgiad.kernels: building the C++ kernels (once per machine and version, about a "
                  f"minute) in {final}", file=sys.stderr, flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"{final.name}.build-", dir=final.parent))
        started = time.monotonic()
        try:
            _compile(work)
            print(f"mgiad.kernels: built in {time.monotonic() - started:.0f}s", file=sys.stderr,
                  flush=True)
            library = work / LIBRARY
            (work / "manifest.json").write_text(json.dumps(
                {"size": library.stat().st_size, "sha256": _digest(library),
                 "torch": torch.__version__}))
            stale = None
            if final.exists():
                stale = final.with_name(f"{final.name}.stale-{os.getpid()}")
                final.rename(stale)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # gone after the rename unless it failed
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    if not hasattr(torch.ops.mgiad_kernels, "conv3x3_forward"):  # the builder loads what it built
        torch.ops.load_library(str(final / LIBRARY))
