"""Grouping runs: seeds of one configuration, budget and epochs (:class:`Group`), their labels,
budgets and the paper's row."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .. import paper
from ...models._naming import display_name
from .runs import CORRUPT_METRICS, MALFORMED_RUNS, RUN_FILES, Run, _read_json, _read_metrics, malformed


OTHER = "runs"      # experiment name for runs that no ``mgiad reproduce`` started


PAPER_SEEDS = 3     # "obtained from three runs with random seed" (section 4)


def _arg(args: dict[str, Any], name: str, model: str) -> Any:
    from ...models import model_arguments
    if name in args:
        return args[name]
    return model_arguments(model).get(name) if model in _models() else None


def _models() -> list[str]:
    from ...models import list_models
    return list_models()


def family(model: str, args: dict[str, Any]) -> str:
    """The figure's series: ResNet, MgNet, MgNet grouped, MGIC, MGiaD g_s=<g_s>."""
    if model.startswith("resnet"):
        return "ResNet"
    if model == "mgnet":
        return "MgNet" if args.get("group_size") is None else "MgNet grouped"
    if model == "mgic":
        return "MGIC"
    if model == "mgiad":
        return f"MGiaD g_s={_arg(args, 'group_size', model)}"
    return model


def _md(text: str) -> str:
    """The paper's superscripts for markdown: ``MgNet^{A,B}`` -> ``MgNet<sup>A,B</sup>``."""
    return re.sub(r"\^(?:\{([^}]*)\}|(\w))", lambda m: f"<sup>{m.group(1) or m.group(2)}</sup>",
                  str(text))


@dataclass
class Configuration:
    """What a run trains, read from its files: experiment, dataset, model and budget."""

    experiment: str
    dataset: str
    key: str
    label: str
    model: str
    model_args: dict[str, Any]
    budget: str               # tag: "paper", "e5-ss2", ...
    overrides: dict[str, Any]
    epochs: int               # epochs trained (finished) or planned (in progress)
    paper_row: paper.PaperRow | None
    note: str

    @property
    def group_key(self) -> tuple:
        return (self.experiment, self.dataset, self.key, self.budget, self.epochs)


@dataclass
class Group(Configuration):
    """The runs of one configuration at one budget and number of epochs: ``runs`` finished (one
    per seed), ``running`` in progress; ``duplicates``: (dropped, kept) run pairs."""

    runs: list[Run] = field(default_factory=list)
    running: list[Run] = field(default_factory=list)
    duplicates: list[tuple[Run, Run]] = field(default_factory=list)

    @property
    def recipe(self) -> dict[str, Any]:
        """The dataset's recipe (the paper's, or the preset's)."""
        return _recipe(self.dataset)

    @property
    def paper_dataset(self) -> bool:
        """A dataset of the paper (its recipe is the paper's); digits is not."""
        return self.dataset in paper.DATASET_SETTINGS

    @property
    def paper_experiment(self) -> bool:
        from ..grid import EXPERIMENTS
        return self.paper_dataset and self.experiment in EXPERIMENTS

    @property
    def reduced(self) -> bool:
        """The budget differs from the recipe: overrides, or fewer (more) epochs than it has."""
        return self.budget != "paper" or self.epochs != self.recipe["epochs"]

    @property
    def truncated(self) -> bool:
        """The recipe, stopped early: a prefix of the full run (extendable in place)."""
        return self.budget == "paper" and self.epochs < self.recipe["epochs"]

    @property
    def comparable(self) -> bool:
        """The paper's experiment at its full recipe: its values compare at face value."""
        return self.paper_experiment and not self.reduced

    @property
    def epochs_text(self) -> str:
        full = self.recipe["epochs"]
        return f"{self.epochs} ep" if self.epochs == full else f"{self.epochs} of {full} ep"

    @property
    def budget_label(self) -> str:
        names = {"batch_size": "batch {}", "lr": "lr {}", "schedule": "{}",
                 "step_size": "lr step every {} ep"}
        parts = [self.epochs_text] + [names[k].format(v) for k, v in self.overrides.items()
                                      if k in names and self.budget != "paper"]
        if not self.paper_dataset:
            return f"{self.dataset}, {', '.join(parts)} (not a paper recipe)"
        text = ("paper recipe, " if self.budget == "paper" else "") + ", ".join(parts)
        return text + ("" if self.paper_experiment else " (not a paper experiment)")

    @property
    def seeds(self) -> list[int]:
        """The distinct seeds of the finished runs."""
        return sorted({r.seed for r in self.runs})

    def values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.runs if r.summary.get(key) is not None]


_weights_cache: dict[str, int] = {}


_recipes: dict[str, dict[str, Any]] = {}


def _recipe(dataset: str) -> dict[str, Any]:
    from ..grid import paper_recipe
    if dataset not in _recipes:
        _recipes[dataset] = paper_recipe(dataset)
    return _recipes[dataset]


def comparable_weights(model: str, args: dict[str, Any], exclude_head: bool) -> int:
    """Our weight count as the paper counts it (table 2 leaves out MgNet's and MGiaD's classifier)."""
    from ...utils.counting import count_parameters
    from ...models import create_model
    key = json.dumps([model, args, exclude_head], sort_keys=True, default=str)
    if key not in _weights_cache:
        built = create_model(model, **{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in args.items()})
        _weights_cache[key] = count_parameters(built, exclude_head=exclude_head)
    return _weights_cache[key]


def _paper_row(info: dict[str, Any], dataset: str) -> paper.PaperRow | None:
    ref = info.get("paper_row")
    if not ref:
        return None
    for row in paper.PAPER_ROWS:
        if row.table == ref.get("table") and row.label == ref.get("label") and row.dataset == dataset:
            return row
    return None


def _budget_of(run: Run, dataset: str, recipe: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if run.experiment.get("budget"):
        budget = run.experiment["budget"]
        return budget.get("tag", "paper"), dict(budget.get("overrides", {}))
    from ..grid import Budget  # a plain `mgiad train` run: compare with the recipe
    train = run.config.get("train", {})
    overrides = {k: train.get(k) for k in recipe if train.get(k) is not None
                 and train.get(k) != recipe[k]}
    budget = Budget(**overrides).normalized(dataset)
    return budget.tag, budget.overrides()


@dataclass
class _Info(Configuration):
    """A run's configuration and seed."""

    seed: int = 0

    @property
    def identity(self) -> tuple:
        return self.group_key + (self.seed,)


def _info(run: Run) -> _Info:
    from ..grid import config_slug
    info = run.experiment
    dataset, model = run.dataset, run.model
    if not dataset or not model:
        raise ValueError(f"{run.directory} names no dataset or model")
    recipe = _recipe(dataset)
    args = dict(run.config.get("model_args") or info.get("model_args") or {})
    if "num_classes" not in args:  # experiment.json only (a run starting): the dataset's shape
        try:
            from ...data import dataset_info
            shape = dataset_info(dataset)
            args = {"num_classes": shape.num_classes, "in_chans": shape.in_chans, **args}
        except Exception:
            pass
    tag, overrides = _budget_of(run, dataset, recipe)
    key = info.get("key") or config_slug(model, run.config.get("train", {}).get("model_args", {}))
    return _Info(info.get("experiment", OTHER), dataset, key,
                 info.get("label") or display_name(model, args), model, args, tag, overrides,
                 run.target_epochs(recipe["epochs"]), _paper_row(info, dataset),
                 info.get("note", ""), seed=run.seed)


def deduplicate(runs: list[Run], info=_info) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """One run per (experiment, dataset, configuration, budget, epochs, seed): the finished one,
    else the one with the most epochs, then the newest; the others as (dropped, kept) pairs.
    ``info``: a run's :class:`_Info` (:func:`group_runs` passes the ones it computed)."""
    by_identity: dict[tuple, list[Run]] = {}
    for run in runs:
        by_identity.setdefault(info(run).identity, []).append(run)
    kept, dropped = [], []
    for members in by_identity.values():
        members = sorted(members, key=lambda r: (r.finished, r.epochs_done, r.updated,
                                                 str(r.directory)), reverse=True)
        kept.append(members[0])
        dropped += [(m, members[0]) for m in members[1:]]
    return kept, dropped


def group_runs(runs: list[Run]) -> list[Group]:
    """Group the runs (after :func:`deduplicate`) by (experiment, dataset, configuration,
    budget, epochs), in the experiments' order; finished and in-progress runs apart."""
    from ..grid import EXPERIMENTS
    infos = {id(run): _info(run) for run in runs}
    kept, dropped = deduplicate(runs, lambda run: infos[id(run)])
    groups: dict[tuple, Group] = {}
    for run in kept:
        i = infos[id(run)]
        if i.group_key not in groups:
            groups[i.group_key] = Group(**{f.name: getattr(i, f.name) for f in fields(Configuration)})
        (groups[i.group_key].runs if run.finished else groups[i.group_key].running).append(run)
    for lost, chosen in dropped:
        groups[infos[id(chosen)].group_key].duplicates.append((lost, chosen))
    for g in groups.values():
        g.runs.sort(key=lambda r: r.seed)
        g.running.sort(key=lambda r: r.seed)

    def order(g: Group):
        exp_names = list(EXPERIMENTS)
        exp_index = exp_names.index(g.experiment) if g.experiment in exp_names else len(exp_names)
        entries = EXPERIMENTS[g.experiment].entries if g.experiment in EXPERIMENTS else ()
        keys = [(e.dataset, e.key) for e in entries]
        entry_index = keys.index((g.dataset, g.key)) if (g.dataset, g.key) in keys else len(keys)
        return (exp_index, g.experiment, g.dataset, entry_index, g.label, g.reduced, -g.epochs,
                g.budget)
    return sorted(groups.values(), key=order)


def load_runs(roots: Iterable[str | Path]) -> tuple[list[Run], list[Path]]:
    """Every run under ``roots`` (any depth; a directory holding one of :data:`RUN_FILES`),
    finished or in progress, and the directories that name no dataset or model the report knows
    (unreadable)."""
    runs, unreadable, seen = [], [], set()
    CORRUPT_METRICS.clear()
    MALFORMED_RUNS.clear()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        candidates = {p.parent for name in RUN_FILES for p in root.rglob(name)}
        for directory in sorted(candidates):
            if directory.resolve() in seen:
                continue
            seen.add(directory.resolve())
            run = Run(directory, _read_json(directory / "summary.json"),
                      _read_json(directory / "config.json"),
                      _read_json(directory / "experiment.json"),
                      _read_metrics(directory / "metrics.jsonl"))
            reason = malformed(run)
            if reason is not None:  # one bad run is skipped, named, never aborts the report
                MALFORMED_RUNS.append(f"{directory}: {reason}")
                continue
            try:
                _info(run)  # a dataset, a model and a recipe the report knows
            except Exception:
                unreadable.append(directory)
                continue
            runs.append(run)
    return runs, unreadable
