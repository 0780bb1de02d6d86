"""The paper's experiments as grids of training runs: (configuration x dataset x seed) at a budget.

An :class:`Experiment` is a named list of :class:`Entry` (a model configuration on a dataset, with
the paper's reported row where there is one). :func:`plan` expands it into :class:`RunSpec`s, one
per seed; each run lives in a directory whose name is derived from (experiment, dataset,
configuration, budget, seed) alone, so running the same command again finds it. :func:`run_grid`
executes a plan idempotently: finished runs (``summary.json``) are skipped, half-done runs resume
from ``last.pt``, a failed run is recorded (``error.log``) and the others go on.

The named experiments (``EXPERIMENTS``) come from :mod:`mgiad.experiments.paper`, the one place the paper's
numbers are held: ``table1``, ``table2``, ``table3`` (their rows) and ``fig7`` (the CIFAR-10 grid).
Rows of table 2 whose printed label is wrong train the configuration the row's numbers belong to
(:attr:`mgiad.experiments.paper.PaperRow.train_kwargs`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import paper
from .paper import PaperRow
from ..models._naming import config_slug, fmt_value as _fmt

__all__ = ["Entry", "Experiment", "Budget", "RunSpec", "EXPERIMENTS", "EXPERIMENT_FILE",
           "get_experiment", "plan", "shard", "parse_shard", "entry_levels", "config_slug",
           "paper_recipe"]

EXPERIMENT_FILE = "experiment.json"


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
        classes and channels are left to the dataset (see :func:`mgiad.training.resolve_config`)."""
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
    from ..models import model_arguments
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
    from ..training import TrainConfig, resolve_config
    resolved = resolve_config(TrainConfig(model="resnet20", dataset=dataset))
    return {k: getattr(resolved, k) for k in _BUDGET_FIELDS}


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
        from ..training import TrainConfig
        config = TrainConfig(model=self.entry.model, model_args=self.entry.model_kwargs(),
                             dataset=self.entry.dataset, seed=self.seed,
                             out=str(self.directory(root)), amp=False,  # the paper: float32
                             **self.budget.overrides())
        for key, value in (options or {}).items():
            if value is not None:
                setattr(config, key, value)
        return config


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
