"""The paper's experiments: its numbers, the grids of runs that reproduce them, shipping trained
weights, and the report.

``paper`` (its tables as data), ``grid`` (experiments as plans of runs), ``runner`` (running a
plan, idempotently), ``slurm`` (submitting one), ``release`` (shipping a finished run as
pretrained weights), ``report/`` (tables and figures from run directories).
"""
from .grid import (EXPERIMENT_FILE, EXPERIMENTS, Budget, Entry, Experiment, RunSpec, config_slug,
                   entry_levels, get_experiment, paper_recipe, parse_shard, plan, shard)
from .runner import (RUN_OPTIONS, RunResult, print_plan, run_grid, run_one, run_status, spec_status,
                     summarize)
from .slurm import SlurmRun, slurm_jobs, submit_slurm

__all__ = ["Entry", "Experiment", "Budget", "RunSpec", "RunResult", "EXPERIMENTS", "EXPERIMENT_FILE",
           "get_experiment", "plan", "shard", "parse_shard", "run_status", "spec_status", "run_one",
           "run_grid", "summarize", "print_plan", "slurm_jobs", "submit_slurm", "SlurmRun",
           "entry_levels", "config_slug", "paper_recipe", "RUN_OPTIONS"]
