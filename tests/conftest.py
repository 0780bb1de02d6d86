"""Shared test set-up. Build the C++ kernels (mgiad.kernels) once, before any test: the fast path
uses them, and a first build inside a timed subprocess (torchrun, CLI tests) would count against its timeout."""
import os

import pytest
import torch

if not torch.cuda.is_available():  # Triton kernels (mgiad.kernels.triton_transfers) run on its
    os.environ.setdefault("TRITON_INTERPRET", "1")  # interpreter; read when they are decorated


def pytest_sessionstart(session):
    from mgiad import kernels
    kernels.available()


def _isas():
    """The kernels' instruction sets this CPU runs (both names where the kernels cannot build:
    those tests skip)."""
    from mgiad.kernels import build, runtime
    if build.missing_tool() is not None or not build.load():
        return ["avx512", "avx2"]
    return [name for level, name in runtime.ISA_NAMES.items() if 0 < level <= runtime.cpu_isa()]


@pytest.fixture(params=_isas())
def isa(request, monkeypatch):
    """Runs a kernel test once per instruction set (MGIAD_KERNELS_ISA)."""
    monkeypatch.setenv("MGIAD_KERNELS_ISA", request.param)
    monkeypatch.delenv("MGIAD_KERNELS", raising=False)
    return request.param


@pytest.fixture
def two_threads():
    """Runs a test with two threads (kernels that split work between threads take other paths)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
