"""Submitting a plan to Slurm with submitit: one job per unfinished run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .grid import RunSpec
from .runner import run_one, run_status
from ..utils.errors import install_hint

__all__ = ["SlurmRun", "slurm_jobs", "submit_slurm"]


class SlurmRun:
    """One run as a submitit job: picklable, idempotent, and requeued from ``last.pt`` when Slurm
    preempts or times it out (submitit calls :meth:`checkpoint`)."""

    def __init__(self, spec: RunSpec, root: str, options: dict[str, Any]):
        self.spec, self.root, self.options = spec, str(root), dict(options)

    def __call__(self) -> dict[str, Any]:
        result = run_one(self.spec, self.root, self.options)
        return {"run": str(result.directory), "status": result.status,
                "best_test_acc": result.summary.get("best_test_acc")}

    def checkpoint(self, *args, **kwargs):
        import submitit
        return submitit.helpers.DelayedSubmission(SlurmRun(self.spec, self.root, self.options))

    def __repr__(self) -> str:
        return f"SlurmRun({self.spec.experiment}/{self.spec.name})"


def slurm_jobs(specs: list[RunSpec], root: str | Path,
               options: dict[str, Any] | None = None) -> list[SlurmRun]:
    """The jobs to submit: one per run that is not finished yet."""
    return [SlurmRun(s, str(root), options or {}) for s in specs
            if run_status(s.directory(root)) != "done"]


def submit_slurm(specs: list[RunSpec], root: str | Path, options: dict[str, Any] | None = None,
                 slurm: dict[str, Any] | None = None, log: Callable[[str], None] = print) -> list:
    """Submit one Slurm job per unfinished run (a job array) with submitit; returns the jobs."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher slurm needs submitit; "
                         + install_hint("slurm", "submitit")) from None
    jobs = slurm_jobs(specs, root, options)
    if not jobs:
        log("every run is finished; nothing to submit")
        return []
    slurm = {k: v for k, v in (slurm or {}).items() if v is not None}
    executor = submitit.AutoExecutor(folder=str(Path(root) / "slurm" / "%j"))
    executor.update_parameters(name=f"mgiad-{specs[0].experiment}", **slurm)
    submitted = []
    with executor.batch():
        for job in jobs:
            submitted.append(executor.submit(job))
    for job, handle in zip(jobs, submitted):
        log(f"submitted {job.spec.experiment}/{job.spec.name}: job {getattr(handle, 'job_id', '?')}")
    return submitted
