"""The paper's experiments as grids of training runs: (configuration x dataset x seed) at a budget.

An :class:`Experiment` is a named list of :class:`Entry` (a model configuration on a dataset, with
the paper's reported row where there is one). :func:`plan` expands it into :class:`RunSpec`s, one
per seed; each run lives in a directory whose name is derived from (experiment, dataset,
configuration, budget, seed) alone, so running the same command again finds it. :func:`run_grid`
executes a plan idempotently: finished runs (``summary.json``) are skipped, half-done runs resume
from ``last.pt``, a failed run is recorded (``error.log``) and the others go on.

The named experiments (``EXPERIMENTS``) come from :mod:`mgiad.paper`, the one place the paper's
numbers are held: ``table1``, ``table2``, ``table3`` (their rows) and ``fig7`` (the CIFAR-10 grid).
Rows of table 2 whose printed label is wrong train the configuration the row's numbers belong to
(:attr:`mgiad.paper.PaperRow.train_kwargs`).
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paper
from .paper import PaperRow
from .progress import plural
from .rundir import RunDirectoryBusy, claim, release

__all__ = ["Entry", "Experiment", "Budget", "RunSpec", "RunResult", "EXPERIMENTS", "get_experiment",
           "plan", "shard", "parse_shard", "run_status", "run_one", "run_grid", "slurm_jobs",
           "submit_slurm", "entry_levels", "config_slug"]

EXPERIMENT_FILE = "experiment.json"

# short names of model arguments in run-directory names (anything else: its own name)
ARG_ABBREVIATIONS = {"widths": "w", "width_mult": "x", "coarse_channels": "ck", "group_size": "gs",
                     "smoothing_steps": "nu", "share": "share", "blocks": "b", "pre_smooth": "pre",
                     "post_smooth": "post", "prolong_norm": "pn", "stem": "stem", "transfer_norm": "tn",
                     "shortcut": "sc"}
# dataset-implied arguments: not part of a configuration's name (the dataset is)
_DATASET_ARGS = ("num_classes", "in_chans", "stem", "prolong_norm")


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_slug(model: str, kwargs: dict[str, Any]) -> str:
    """A file-name-safe, deterministic name of a model configuration, e.g. ``mgiad-w16.32.64-ck16-gs4``."""
    order = list(ARG_ABBREVIATIONS)
    keys = sorted((k for k in kwargs if k not in _DATASET_ARGS),
                  key=lambda k: (order.index(k) if k in order else len(order), k))
    parts = [model] + [f"{ARG_ABBREVIATIONS.get(k, k)}{_fmt(kwargs[k])}" for k in keys]
    return re.sub(r"[^A-Za-z0-9.+=_-]", "_", "-".join(parts))


@dataclass(frozen=True)
class Entry:
    """A model configuration on one dataset. ``kwargs``: the architecture arguments trained
    (without the dataset-implied classes and channels). ``paper``: the reported row, if any."""

    label: str
    model: str
    kwargs: dict[str, Any]
    dataset: str
    paper: PaperRow | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return config_slug(self.model, self.kwargs)

    def model_kwargs(self) -> dict[str, Any]:
        """create_model arguments: the dataset's setting (stem, prolong_norm) and ``kwargs``;
        classes and channels are left to the dataset (see :func:`mgiad.train.resolve_config`)."""
        setting = {k: v for k, v in paper.DATASET_SETTINGS.get(self.dataset, {}).items()
                   if k in ("stem", "prolong_norm")}
        if self.model != "mgiad":
            setting.pop("prolong_norm", None)
        return {**setting, **self.kwargs}

    @classmethod
    def from_row(cls, row: PaperRow) -> "Entry":
        note = ""
        if row.anomaly is not None and row.anomaly.relabel:
            trained = " ".join(f"{k}={_fmt(v)}" for k, v in row.anomaly.relabel.items())
            note = (f"paper label '{row.label}' is wrong ({row.anomaly.reason}); "
                    f"trained the configuration its numbers belong to: {trained}")
        return cls(row.label, row.model, row.train_kwargs, row.dataset, row, note)


def entry_levels(entry: Entry) -> int:
    """Resolution levels of the entry's network (ResNet20: 3, ResNet18: 4, else len(widths))."""
    if "widths" in entry.kwargs:
        return len(entry.kwargs["widths"])
    from .registry import model_arguments
    default = model_arguments(entry.model).get("widths")
    if default is not None:
        return len(default)
    return {"resnet20": 3, "resnet18": 4}.get(entry.model, 0)


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    entries: tuple[Entry, ...]
    columns: tuple[str, ...] = ("width_mult", "coarse_channels", "group_size")  # the table's own

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(e.dataset for e in self.entries))

    def select(self, dataset: str | None = None, levels: int | None = None,
               match: Iterable[str] = ()) -> list[Entry]:
        """Entries on ``dataset`` with ``levels`` resolution levels whose label or key contains
        one of ``match`` (case-insensitive); ``None`` / empty: no filter."""
        match = [m.lower() for m in match]
        chosen = [e for e in self.entries if (dataset is None or e.dataset == dataset)
                  and (levels is None or entry_levels(e) == levels)
                  and (not match or any(m in e.label.lower() or m in e.key.lower() for m in match))]
        unique: dict[tuple[str, str], Entry] = {}
        for e in chosen:
            unique.setdefault((e.dataset, e.key), e)
        return list(unique.values())


def _table(number: str, title: str, columns: tuple[str, ...]) -> Experiment:
    return Experiment(f"table{number}", title,
                      tuple(Entry.from_row(r) for r in paper.rows(number)), columns)


EXPERIMENTS: dict[str, Experiment] = {
    "table1": _table("1", "Table 1: CIFAR-10, computational cost", ("width_mult", "group_size")),
    "table2": _table("2", "Table 2: Fashion-MNIST, influence of c_K and g_s",
                     ("coarse_channels", "group_size")),
    "table3": _table("3", "Table 3: CIFAR-100, Tiny ImageNet, ImageNet, channel scaling lambda",
                     ("width_mult", "group_size")),
    "fig7": Experiment("fig7", "Figure 7: CIFAR-10, accuracy against weights",
                       tuple(Entry(g.label, g.model, g.kwargs, "cifar10", g.paper)
                             for g in paper.FIGURE7_GRID)),
}


def get_experiment(name: str) -> Experiment:
    key = name.lower().replace("-", "").replace("_", "")
    key = {"1": "table1", "2": "table2", "3": "table3", "7": "fig7", "figure7": "fig7"}.get(key, key)
    if key not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[key]


# ------------------------------------------------------------------------------------ budget
_BUDGET_FIELDS = {"epochs": "e", "batch_size": "b", "lr": "lr", "schedule": "", "step_size": "ss"}


@dataclass(frozen=True)
class Budget:
    """Overrides of the paper's recipe (``None``: the paper's value for the dataset).

    ``prefix``: the learning rate of an epoch does not depend on the number of epochs (step or
    constant schedule), so a shorter run is a prefix of the longer one: the epochs are then not
    part of the run's identity, and asking for more epochs later extends the same run.
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    schedule: str | None = None
    step_size: int | None = None
    prefix: bool = False

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None and k in _BUDGET_FIELDS}

    def normalized(self, dataset: str) -> "Budget":
        """Drop overrides equal to the paper's recipe for ``dataset`` (one directory per recipe)."""
        recipe = paper_recipe(dataset)
        kept = {k: v for k, v in self.overrides().items() if recipe.get(k) != v}
        schedule = kept.get("schedule", recipe["schedule"])
        return Budget(**kept, prefix=schedule != "cosine")

    @property
    def tag(self) -> str:
        """``paper``, or the overrides, e.g. ``e5-cosine`` (no epochs for a ``prefix`` budget)."""
        parts = [f"{_BUDGET_FIELDS[k]}{_fmt(v)}" for k, v in self.overrides().items()
                 if not (self.prefix and k == "epochs")]
        return "-".join(parts) if parts else "paper"


def paper_recipe(dataset: str) -> dict[str, Any]:
    """The paper's epochs, batch size, learning rate, schedule and step size for ``dataset``."""
    from .train import TrainConfig, resolve_config
    resolved = resolve_config(TrainConfig(model="resnet20", dataset=dataset))
    return {k: getattr(resolved, k) for k in _BUDGET_FIELDS}


# -------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    experiment: str
    entry: Entry
    seed: int
    budget: Budget

    @property
    def name(self) -> str:
        return f"{self.entry.dataset}-{self.entry.key}-{self.budget.tag}-s{self.seed}"

    def directory(self, root: str | Path) -> Path:
        return Path(root) / self.experiment / self.name

    @property
    def epochs(self) -> int:
        """The epochs this run trains to (the budget's, else the paper's recipe's)."""
        return self.budget.epochs or paper_recipe(self.entry.dataset)["epochs"]

    def describe(self) -> dict[str, Any]:
        """What ``experiment.json`` records: enough for the report to group and compare."""
        row = self.entry.paper
        return {"experiment": self.experiment, "key": self.entry.key, "label": self.entry.label,
                "model": self.entry.model, "model_args": self.entry.model_kwargs(),
                "dataset": self.entry.dataset, "seed": self.seed,
                "budget": {"tag": self.budget.tag, "overrides": self.budget.overrides()},
                "paper_row": None if row is None else {"table": row.table, "label": row.label},
                "note": self.entry.note}

    def train_config(self, root: str | Path, options: dict[str, Any] | None = None):
        from .train import TrainConfig
        config = TrainConfig(model=self.entry.model, model_args=self.entry.model_kwargs(),
                             dataset=self.entry.dataset, seed=self.seed,
                             out=str(self.directory(root)), amp=False,  # the paper: float32
                             **self.budget.overrides())
        for key, value in (options or {}).items():
            if value is not None:
                setattr(config, key, value)
        return config


# execution options passed through to TrainConfig (not part of a run's identity)
RUN_OPTIONS = ("data_dir", "download", "device", "workers", "amp", "channels_last", "compile",
               "progress")


def plan(experiment: Experiment, seeds: int | Iterable[int] = 3, budget: Budget = Budget(),
         dataset: str | None = None, levels: int | None = None,
         match: Iterable[str] = ()) -> list[RunSpec]:
    """Every run of ``experiment``: seed-major (all configurations of seed 0 first), then the
    experiment's order; the budget is normalised per dataset."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if isinstance(seeds, int) and seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    entries = experiment.select(dataset, levels, match)
    if not entries:
        what = ", ".join(f"{k}={v}" for k, v in (("dataset", dataset), ("levels", levels))
                         if v is not None) or "no filter"
        raise ValueError(f"experiment {experiment.name} has no configurations for {what}"
                         + (f" matching {', '.join(match)}" if match else "")
                         + f"; its datasets: {', '.join(experiment.datasets)}")
    budgets = {d: budget.normalized(d) for d in {e.dataset for e in entries}}
    return [RunSpec(experiment.name, e, s, budgets[e.dataset]) for s in seed_list for e in entries]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> ``(i, n)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"--shard takes i/n (e.g. 0/4 .. 3/4), got {text!r}")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs 0 <= i < n (shards are numbered from 0), got {text!r}")
    return i, n


def shard(specs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Shard ``index`` of ``count``: every ``count``-th run of the plan, starting at ``index``.
    The plan's order is deterministic, so shards need no coordination and never overlap."""
    return specs[index::count]


def run_status(directory: Path) -> str:
    """``done`` (summary.json), ``partial`` (last.pt: it resumes), ``failed`` (error.log), or ``new``."""
    if (directory / "summary.json").is_file():
        return "done"
    if (directory / "last.pt").is_file():
        return "partial"
    if (directory / "error.log").is_file():
        return "failed"
    return "new"


def spec_status(spec: RunSpec, root: str | Path) -> str:
    """:func:`run_status` of the spec's run, or ``shorter`` for a finished prefix run that has
    fewer epochs than the spec asks for (running it extends the run)."""
    directory = spec.directory(root)
    status = run_status(directory)
    if status == "done" and spec.budget.prefix:
        try:
            epochs = json.loads((directory / "summary.json").read_text()).get("epochs")
        except (OSError, ValueError):
            return status
        if isinstance(epochs, int) and epochs < spec.epochs:
            return "shorter"
    return status


@dataclass
class RunResult:
    spec: RunSpec
    directory: Path
    status: str          # skipped | trained | resumed | busy (another process) | failed
    error: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _tee(path: Path, log: Callable[[str], None]) -> Callable[[str], None]:
    def write(message: str) -> None:
        log(message)
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    return write


def run_one(spec: RunSpec, root: str | Path, options: dict[str, Any] | None = None,
            log: Callable[[str], None] = print) -> RunResult:
    """Run ``spec`` idempotently: skip it if finished, resume it if half-done, else start it.
    Exceptions propagate (``run_grid`` records them); Ctrl-C leaves a resumable ``last.pt``."""
    from .checkpoint import write_json_atomic
    from .train import TrainConfig, train
    directory = spec.directory(root)
    claim(directory)  # RunDirectoryBusy if another process (a second reproduce) trains it
    try:
        status = spec_status(spec, root)  # read under the claim: nobody else changes it now
        if status == "done":
            return RunResult(spec, directory, "skipped",
                             summary=json.loads((directory / "summary.json").read_text()))
        write_json_atomic(spec.describe(), directory / EXPERIMENT_FILE)
        (directory / "error.log").unlink(missing_ok=True)
        tee = _tee(directory / "train.log", log)
        start = time.time()
        if status in ("partial", "shorter"):  # shorter: a prefix of the asked-for run, extended
            summary = train(TrainConfig(), resume=directory, log=tee,
                            epochs=spec.epochs if spec.budget.prefix else None)
            kind = "resumed"
        else:
            summary = train(spec.train_config(root, options), log=tee)
            kind = "trained"
    finally:
        release(directory)
    return RunResult(spec, directory, kind, seconds=time.time() - start, summary=summary)


def run_grid(specs: list[RunSpec], root: str | Path, options: dict[str, Any] | None = None,
             log: Callable[[str], None] = print) -> list[RunResult]:
    """Run every spec in turn; a failure is logged to ``<run>/error.log`` and the grid goes on.
    Ctrl-C stops the grid (the current run saves ``last.pt``; the same command resumes it)."""
    results = []
    for i, spec in enumerate(specs, 1):
        directory = spec.directory(root)
        prefix = f"[{i}/{len(specs)}] {spec.experiment}/{spec.name}"
        status = spec_status(spec, root)
        if status == "done":
            log(f"{prefix}: done, skipped")
        else:
            verb = {"partial": "resuming", "shorter": f"extending to {plural(spec.epochs, 'epoch')}"}
            log(f"{prefix}: {verb.get(status, 'starting')} "
                f"({spec.entry.label}, seed {spec.seed}, budget {spec.budget.tag}, "
                f"{plural(spec.epochs, 'epoch')})")
        try:
            result = run_one(spec, root, options, log)
        except KeyboardInterrupt:
            log(f"{prefix}: interrupted; run the same command again to resume")
            raise
        except RunDirectoryBusy:  # another mgiad reproduce trains it: go on with the next run
            log(f"{prefix}: in use by another process, skipped")
            result = RunResult(spec, directory, "busy")
        except Exception as exc:  # a failed run never stops the others
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "error.log").write_text(traceback.format_exc())
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(f"{prefix}: FAILED: {message} (traceback in {directory / 'error.log'})")
            result = RunResult(spec, directory, "failed", error=message)
        results.append(result)
    return results


def summarize(results: list[RunResult]) -> str:
    counts = {k: sum(r.status == k for r in results)
              for k in ("trained", "resumed", "skipped", "busy", "failed")}
    text = ", ".join(f"{v} {k}" for k, v in counts.items())
    failed = [f"  {r.spec.experiment}/{r.spec.name}: {r.error}" for r in results if r.status == "failed"]
    return f"{len(results)} runs: {text}" + ("\nfailed:\n" + "\n".join(failed) if failed else "")


# ------------------------------------------------------------------------------------- slurm
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
        raise ValueError("--launcher slurm needs submitit: pip install 'mgiad[slurm]' "
                         "(or pip install submitit)") from None
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


def print_plan(specs: list[RunSpec], root: str | Path, out=None) -> None:
    """The ``--dry-run`` listing: one line per run with its status and configuration."""
    out = out or sys.stdout
    print(f"{'status':8} {'run directory':70} model arguments", file=out)
    for spec in specs:
        directory = spec.directory(root)
        args = " ".join(f"{k}={_fmt(v)}" for k, v in spec.entry.model_kwargs().items())
        print(f"{spec_status(spec, root):8} {str(directory):70} {spec.entry.model} {args}", file=out)
        if spec.entry.note:
            print(f"{'':8} note: {spec.entry.note}", file=out)
    budgets = sorted({(s.entry.dataset, s.budget.tag) for s in specs})
    for dataset, tag in budgets:
        recipe = paper_recipe(dataset)
        overrides = next(s.budget.overrides() for s in specs
                         if s.entry.dataset == dataset and s.budget.tag == tag)
        shown = {**recipe, **overrides}
        print(f"budget on {dataset}: {tag} (" + ", ".join(f"{k}={v}" for k, v in shown.items())
              + f"; the recipe's: {recipe['epochs']} epochs)", file=out)
    print(f"{len(specs)} runs", file=out)
