"""``mgiad report``: tables and figures from run directories."""
from __future__ import annotations

import argparse
import sys

HELP = """\
tables (markdown + CSV) and figures (PNG + SVG) from finished runs and learning curves of runs
in progress"""
DESCRIPTION = """\
Read every finished run (summary.json) under RUNS, group the seeds of each configuration and
budget, and write one table per experiment and dataset in the paper's layout beside the paper's
values, the accuracy-vs-weights figure (with a wall-clock panel) and report.md. Mean and sample
standard deviation (ddof=1) over seeds; runs with fewer epochs than the paper's recipe are
labelled with their budget. Figures need matplotlib (from a clone: pip install -c constraints.txt -e ".[plot]"); no
display is needed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["runs"], help="run folders to read (default: runs)")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--experiment", action="append", default=None,
                   help="only this experiment (table1, table2, table3, fig7; repeatable)")
    p.add_argument("--no-figures", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from ..experiments.report import write_report
    written = write_report(args.runs, args.out, experiments=args.experiment or None,
                           figures=not args.no_figures, log=print)
    if not written["tables"]:
        print(f"mgiad report: no runs (finished or in progress) under {', '.join(args.runs)}",
              file=sys.stderr)
        return 1
    return 0
