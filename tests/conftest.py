"""Build the C++ kernels (mgiad.kernels) once, before any test: the fast path uses them, and a
first build inside a timed subprocess (torchrun, CLI tests) would count against its timeout."""


def pytest_sessionstart(session):
    from mgiad import kernels
    kernels.available()
