"""``mgiad bench``: speed and memory against ResNet18 (mgiad.perf.bench)."""
from __future__ import annotations

import argparse

from .args import plain_text

HELP = "speed and memory against ResNet18 (train step, folded inference, peak memory)"
DESCRIPTION = None  # mgiad.perf.bench's docstring, as it is laid out (see add_arguments)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..perf import bench
    p.description = plain_text(bench.__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    bench.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..perf import bench
    return bench.cmd_bench(args)
