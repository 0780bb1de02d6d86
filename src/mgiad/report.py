"""Tables and figures from the runs, beside the paper's values.

:func:`write_report` reads every run directory under the given folders: finished runs
(``summary.json``) and runs in progress (``config.json`` / ``experiment.json`` and the
``metrics.jsonl`` written so far, no ``summary.json``), with the ``experiment.json`` that
``mgiad reproduce`` writes or as a plain ``mgiad train`` run. It groups them by (experiment,
dataset, configuration, budget, epochs) and writes, per experiment and dataset,

- ``<experiment>-<dataset>.md`` / ``.csv``: the paper's layout (model, lambda / c_K / g_s,
  weights, GFLOPs, test accuracy mean (std), train accuracy) beside the paper's row and the
  difference, one row per finished configuration; then one row per run in progress (its latest
  epoch, test accuracy and running training accuracy; ``status`` says "in progress, epoch k of N");
- ``<experiment>-<dataset>.png`` / ``.svg``: test accuracy against weights and against measured
  training speed, finished configurations only (see :mod:`mgiad.report_figures`);
- ``<experiment>-<dataset>-curves.png`` / ``.svg``: test accuracy (and running training accuracy)
  per epoch of every run, finished or in progress, with the paper's final test accuracy dashed;
- ``report.md``: every table and figure, the run directories dropped as duplicates, and those
  that could not be read.

Seeds: two run directories with the same configuration, budget, epochs and seed are one seed (the
most complete, then the newest, is kept; the others are listed as duplicates). Statistics use the
finished runs only: the mean over seeds and the *sample* standard deviation (``ddof=1``); with a
single seed it is undefined and left empty. Test accuracy is the final epoch's
(``final_test_acc``); the best epoch's is in the CSV. Train accuracy is the paper's: the final model
in eval mode on the un-augmented training set (``train_acc``); summaries written before that was
measured hold only the running accuracy of the last epoch, shown marked "running" and not compared
with the paper.

Budgets: a run with the paper's recipe and its number of epochs is labelled ``paper recipe, 400
ep``; a shorter prefix of it (Fashion-MNIST's step schedule lets a run stop early and be extended
later) ``paper recipe, 30 of 400 ep``; other overrides are named (``5 of 400 ep, lr step every 2
ep``). Runs of datasets the paper does not use (digits) are labelled ``digits, 15 ep (not a paper
recipe)``, and runs of no experiment of the paper ``(not a paper experiment)``.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paper
from .progress import plural

__all__ = ["Run", "Group", "load_runs", "deduplicate", "group_runs", "write_report", "family",
           "display_name", "mean_std", "train_accuracy", "summarize_group", "progress_rows",
           "curves_of"]

OTHER = "runs"      # experiment name for runs that no ``mgiad reproduce`` started
PAPER_SEEDS = 3     # "obtained from three runs with random seed" (section 4)


# ------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run directory: finished (``summary`` non-empty) or in progress."""

    directory: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    experiment: dict[str, Any]
    metrics: list[dict[str, Any]]

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    @property
    def failed(self) -> bool:
        return not self.finished and (self.directory / "error.log").is_file()

    def _field(self, name: str) -> Any:
        return self.summary.get(name) or self.config.get(name) or self.experiment.get(name)

    @property
    def dataset(self) -> str | None:
        return self._field("dataset")

    @property
    def model(self) -> str | None:
        return self._field("model")

    @property
    def seed(self) -> int:
        return int(self.config.get("train", {}).get("seed", self.experiment.get("seed", 0)))

    @property
    def epochs_done(self) -> int:
        if self.metrics:
            return int(self.metrics[-1].get("epoch", len(self.metrics)))
        return int(self.summary.get("epochs", 0)) if self.finished else 0

    def target_epochs(self, recipe_epochs: int) -> int:
        """The epochs the run trains to: the summary's, else config.json's, else the budget's."""
        if self.finished and self.summary.get("epochs"):
            return int(self.summary["epochs"])
        if self.config.get("train", {}).get("epochs"):
            return int(self.config["train"]["epochs"])
        overrides = (self.experiment.get("budget") or {}).get("overrides", {})
        return int(overrides.get("epochs") or recipe_epochs)

    @property
    def updated(self) -> float:
        """Modification time of the newest of the run's files (for picking among duplicates)."""
        times = [p.stat().st_mtime for p in (self.directory / n for n in (
            "summary.json", "metrics.jsonl", "config.json", "experiment.json", "last.pt"))
                 if p.is_file()]
        return max(times, default=0.0)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


CORRUPT_METRICS: list[str] = []  # "<path>: line N" of the lines the last load_runs skipped


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, one dict per finished epoch; a line that does not parse is skipped and
    named in :data:`CORRUPT_METRICS` (the report says which file and line)."""
    metrics = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            CORRUPT_METRICS.append(f"{path}: line {number}")
            continue
        if isinstance(entry, dict) and entry.get("test_acc") is not None:
            metrics.append(entry)
    return metrics


RUN_FILES = ("summary.json", "config.json", "experiment.json")


def load_runs(roots: Iterable[str | Path]) -> tuple[list[Run], list[Path]]:
    """Every run under ``roots`` (any depth; a directory holding one of :data:`RUN_FILES`),
    finished or in progress, and the directories that name no dataset or model the report knows
    (unreadable)."""
    runs, unreadable, seen = [], [], set()
    CORRUPT_METRICS.clear()
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
            try:
                _info(run)  # a dataset, a model and a recipe the report knows
            except Exception:
                unreadable.append(directory)
                continue
            runs.append(run)
    return runs, unreadable


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); ``None`` for a single value (and no values)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _running(metric: dict[str, Any]) -> float | None:
    """An epoch's running training accuracy (older runs call it ``train_acc``)."""
    value = metric.get("train_running_acc", metric.get("train_acc"))
    return None if value is None else float(value)


def train_accuracy(summary: dict[str, Any]) -> tuple[float | None, str | None]:
    """A finished run's train accuracy and its kind.

    ``"eval"``: the paper's measure, the final model in eval mode on the un-augmented training
    set (``train_acc``; also ``final_train_acc`` where the summary holds the running figure
    beside it). ``"running"``: summaries from before that measurement hold only
    ``final_train_acc``, which was then the last epoch's running accuracy (train mode, over the
    epoch's batches)."""
    if summary.get("train_acc") is not None:
        return float(summary["train_acc"]), "eval"
    if summary.get("final_train_acc") is not None:
        kind = "eval" if "final_train_running_acc" in summary else "running"
        return float(summary["final_train_acc"]), kind
    return None, None


def _running_of(run: Run) -> float | None:
    if run.summary.get("final_train_running_acc") is not None:
        return float(run.summary["final_train_running_acc"])
    value, kind = train_accuracy(run.summary)
    if kind == "running":
        return value
    return _running(run.metrics[-1]) if run.metrics else None


# ----------------------------------------------------------------------------- naming models
def _arg(args: dict[str, Any], name: str, model: str) -> Any:
    from .registry import model_arguments
    if name in args:
        return args[name]
    return model_arguments(model).get(name) if model in _models() else None


def _models() -> list[str]:
    from .registry import list_models
    return list_models()


def _default(model: str, name: str) -> Any:
    from .registry import model_arguments
    value = model_arguments(model).get(name) if model in _models() else None
    return list(value) if isinstance(value, tuple) else value


def display_name(model: str, args: dict[str, Any]) -> str:
    """The model column: ``ResNet20``, ``MgNet^{A,B} 16-32-64 nu=3``, ``MGiaD 16-32-64``, ...

    The paper's notation (``^{A,B}``, ``nu``, ``g_s``) is kept as text here and in the CSV; the
    markdown prints it as ``MgNet<sup>A,B</sup>`` and the figures as mathtext."""
    widths = args.get("widths")
    suffix = ""
    if widths is not None and list(widths) != _default(model, "widths"):
        suffix = " " + "-".join(str(w) for w in widths)
    if model == "mgnet":
        name = "MgNet^{A,B}" if args.get("share", "AB") == "AB" else "MgNet^A"
        steps = args.get("smoothing_steps", 2)
        if steps != _default(model, "smoothing_steps"):
            suffix += f" nu={steps if not isinstance(steps, list) else '/'.join(map(str, steps))}"
        return name + suffix
    if model == "mgiad":
        extra = "".join(f" {n}={args[k]}" for k, n in (("pre_smooth", "eta_pre"),
                                                       ("post_smooth", "eta_post"))
                        if k in args and args[k] != _default(model, k))
        return "MGiaD" + suffix + extra
    names = {"resnet18": "ResNet18", "resnet20": "ResNet20", "mgic": "MGIC"}
    return names.get(model, model) + suffix


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


# ---------------------------------------------------------------------------------- grouping
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
        from .experiments import EXPERIMENTS
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
    from .experiments import paper_recipe
    if dataset not in _recipes:
        _recipes[dataset] = paper_recipe(dataset)
    return _recipes[dataset]


def comparable_weights(model: str, args: dict[str, Any], exclude_head: bool) -> int:
    """Our weight count as the paper counts it (table 2 leaves out MgNet's and MGiaD's classifier)."""
    from .counting import count_parameters
    from .registry import create_model
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
    from .experiments import Budget  # a plain `mgiad train` run: compare with the recipe
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
    from .experiments import config_slug
    info = run.experiment
    dataset, model = run.dataset, run.model
    if not dataset or not model:
        raise ValueError(f"{run.directory} names no dataset or model")
    recipe = _recipe(dataset)
    args = dict(run.config.get("model_args") or info.get("model_args") or {})
    if "num_classes" not in args:  # experiment.json only (a run starting): the dataset's shape
        try:
            from .data import dataset_info
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
    from .experiments import EXPERIMENTS
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


# -------------------------------------------------------------------------------------- rows
COLUMN_NAMES = {"width_mult": "lambda", "coarse_channels": "c_K", "group_size": "g_s"}
_CONFIG_MODELS = {"width_mult": ("mgiad", "mgnet", "mgic", "resnet18", "resnet20"),
                  "coarse_channels": ("mgiad", "mgic"), "group_size": ("mgiad", "mgic", "mgnet")}


def _config_value(group: Group, name: str) -> Any:
    if group.model not in _CONFIG_MODELS[name]:
        return None
    value = _arg(group.model_args, name, group.model)
    if name == "width_mult" and value == 1 and group.model.startswith("resnet"):
        return None
    return value


def _common(group: Group, fallback_weights: Any) -> dict[str, Any]:
    """The columns a finished row and an in-progress row share: configuration, budget, paper."""
    row = group.paper_row
    exclude_head = row.exclude_head if row is not None else False
    try:
        weights = comparable_weights(group.model, group.model_args, exclude_head)
    except Exception:  # a model we cannot rebuild here: fall back to the run's own count
        weights = int(fallback_weights) if fallback_weights else None
    return {
        "experiment": group.experiment, "dataset": group.dataset, "label": group.label,
        "model": display_name(group.model, group.model_args), "architecture": group.model,
        "family": family(group.model, group.model_args),
        "lambda": _config_value(group, "width_mult"), "c_K": _config_value(group, "coarse_channels"),
        "g_s": _config_value(group, "group_size"),
        "budget": group.budget_label, "budget_tag": group.budget, "epochs": group.epochs,
        "paper_epochs": group.recipe["epochs"], "reduced_budget": group.reduced,
        "comparable": group.comparable,
        "weights": weights, "weights_counted_without_classifier": exclude_head,
        "weights_k": weights / 1e3 if weights else None,
        "paper_weights_k": row.weights_k if row else None,
        "weights_rel_diff": weights / (row.weights_k * 1e3) - 1 if row and weights else None,
        "paper_gflops": row.gflops if row else None,
        "paper_test_acc": row.test if row else None,
        "paper_test_acc_std": row.test_std if row else None,
        "paper_train_acc": row.train if row else None,
        "paper_row": row.label if row else None,
        "note": "; ".join(n for n in (group.note, row.anomaly.reason if row and row.anomaly
                                      and row.anomaly.reason not in group.note else "") if n),
    }


def _diff(ours: float | None, theirs: float | None) -> float | None:
    return ours - theirs if ours is not None and theirs is not None else None


def summarize_group(group: Group) -> dict[str, Any]:
    """The table's row of a configuration's finished runs, as plain values (CSV); the markdown
    formats the same dict. Train accuracy: the paper's measure (:func:`train_accuracy`) over the
    runs that have it; where none has it, the running figure, with ``train_acc_kind`` "running"
    and no difference to the paper."""
    result = _common(group, group.runs[0].summary.get("weights"))
    test, test_std = mean_std(group.values("final_test_acc"))
    trains = [train_accuracy(r.summary) for r in group.runs]
    evals = [v for v, kind in trains if kind == "eval"]
    if evals:
        train, train_std = mean_std(evals)
        kind = "eval" if len(evals) == len(trains) else f"eval ({len(evals)} of {len(trains)} runs)"
    else:
        train, train_std = mean_std([v for v, kind in trains if v is not None])
        kind = "running" if train is not None else None
    running, _ = mean_std([v for v in map(_running_of, group.runs) if v is not None])
    best, best_std = mean_std(group.values("best_test_acc"))
    speeds = _speeds_by_device(group.runs)
    wall, _ = mean_std(group.values("wall_seconds"))
    flops = group.runs[0].summary.get("flops")
    result.update({
        "status": "finished", "epochs_done": group.epochs,
        "seeds": len(group.seeds), "seed_list": " ".join(map(str, group.seeds)),
        "gflops": flops / 1e9 if flops else None,
        "test_acc": test, "test_acc_std": test_std,
        "test_acc_diff": _diff(test, result["paper_test_acc"]),
        "train_acc": train, "train_acc_std": train_std, "train_acc_kind": kind,
        "train_acc_diff": _diff(train, result["paper_train_acc"]) if evals else None,
        "train_running_acc": running,
        "best_test_acc": best, "best_test_acc_std": best_std,
        "speeds": {d: sum(v) / len(v) for d, v in speeds.items()},
        "speed_runs": {d: len(v) for d, v in speeds.items()},
        "wall_seconds": wall, "device": ",".join(sorted({_device(r) for r in group.runs})),
        "duplicates": " ".join(str(lost.directory) for lost, chosen in group.duplicates
                               if chosen.finished),
        "runs": " ".join(str(r.directory) for r in group.runs),
    })
    mean = result["speeds"]
    result["images_per_s"] = next(iter(mean.values())) if len(mean) == 1 else None
    result["images_per_s_by_device"] = "; ".join(f"{d} {v:.0f}" for d, v in mean.items())
    return result


def _device(run: Run) -> str:
    """Where a run finished: the GPU's name where the summary records one, else cpu/cuda."""
    return str(run.summary.get("device_name") or run.summary.get("device", "?"))


def _speeds_by_device(runs: list[Run]) -> dict[str, list[float]]:
    """Training img/s of the runs per device: seeds that ran on a CPU and on a GPU are never
    averaged together."""
    by_device: dict[str, list[float]] = {}
    for run in runs:
        if run.summary.get("images_per_s") is not None:
            by_device.setdefault(_device(run), []).append(run.summary["images_per_s"])
    return dict(sorted(by_device.items()))


def run_status(run: Run, target: int) -> str:
    """``finished``, ``in progress, epoch k of N``, or ``failed after epoch k of N (error.log)``."""
    if run.finished:
        return "finished"
    if run.failed:
        return f"failed after epoch {run.epochs_done} of {target} (error.log)"
    return f"in progress, epoch {run.epochs_done} of {target}"


def progress_rows(group: Group) -> list[dict[str, Any]]:
    """One row per run in progress: its latest epoch's test accuracy and running training
    accuracy (never part of the finished statistics)."""
    rows = []
    for run in group.running:
        result = _common(group, None)
        last = run.metrics[-1] if run.metrics else {}
        test = last.get("test_acc")
        speeds = [m["images_per_s"] for m in run.metrics if m.get("images_per_s")]
        result.update({
            "status": run_status(run, group.epochs), "epochs_done": run.epochs_done,
            "seeds": 1, "seed_list": str(run.seed), "gflops": None,
            "test_acc": test, "test_acc_std": None,
            "test_acc_diff": _diff(test, result["paper_test_acc"]),
            "train_acc": None, "train_acc_std": None, "train_acc_kind": None,
            "train_acc_diff": None, "train_running_acc": _running(last) if last else None,
            "best_test_acc": max((m["test_acc"] for m in run.metrics), default=None),
            "best_test_acc_std": None,
            "images_per_s": sum(speeds) / len(speeds) if speeds else None,
            "wall_seconds": last.get("elapsed"),
            "device": str(run.config.get("device", "?")),
            "duplicates": " ".join(str(lost.directory) for lost, chosen in group.duplicates
                                   if chosen is run),
            "runs": str(run.directory),
        })
        rows.append(result)
    return rows


def curves_of(groups: list[Group]) -> list[dict[str, Any]]:
    """Per-epoch data of every run (finished and in progress) for
    :func:`mgiad.report_figures.plot_learning_curves`: one dict per configuration and budget."""
    curves = []
    for g in groups:
        clash = sum(1 for other in groups if other.label == g.label and other.key != g.key)
        runs = sorted(g.runs + g.running, key=lambda r: (r.seed, str(r.directory)))
        curves.append({
            "label": g.label + (f" [{g.key}]" if clash else ""), "budget": g.budget_label,
            "paper_test_acc": g.paper_row.test if g.paper_row else None,
            "paper_epochs": g.recipe["epochs"] if g.paper_row else None,
            "runs": [{"seed": r.seed, "finished": r.finished, "target": g.epochs,
                      "epoch": [int(m.get("epoch", i + 1)) for i, m in enumerate(r.metrics)],
                      "test_acc": [float(m["test_acc"]) for m in r.metrics],
                      "train_running_acc": [_running(m) for m in r.metrics]} for r in runs]})
    return curves


CSV_FIELDS = ["experiment", "dataset", "label", "status", "model", "architecture", "lambda", "c_K",
              "g_s", "budget", "budget_tag", "epochs", "epochs_done", "paper_epochs",
              "reduced_budget", "comparable", "seeds", "seed_list", "weights",
              "weights_counted_without_classifier", "weights_k", "paper_weights_k",
              "weights_rel_diff", "gflops", "paper_gflops", "test_acc", "test_acc_std",
              "paper_test_acc", "paper_test_acc_std", "test_acc_diff", "train_acc",
              "train_acc_std", "train_acc_kind", "paper_train_acc", "train_acc_diff",
              "train_running_acc", "best_test_acc", "best_test_acc_std", "images_per_s",
              "images_per_s_by_device", "wall_seconds", "device", "paper_row", "note", "duplicates", "runs"]


def _f(value: Any, fmt: str = ".2f", empty: str = "–") -> str:
    if value is None:
        return empty
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


def _acc(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ({std:.2f})" if std is not None else f"{mean:.2f}"


def _seeds_text(groups: list[Group]) -> str:
    finished = [g for g in groups if g.runs]
    if not finished:
        return "no finished run yet"
    seeds = sorted({s for g in finished for s in g.seeds})
    counts = sorted({len(g.seeds) for g in finished})
    per = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    what = "seed" if counts == [1] else "seeds"
    return f"{per} {what} per configuration (seed{'s' if len(seeds) > 1 else ''} " \
           f"{', '.join(map(str, seeds))})"


def _by_budget(groups: list[Group]) -> dict[str, list[Group]]:
    budgets: dict[str, list[Group]] = {}
    for g in sorted(groups, key=lambda g: (not g.comparable, g.budget != "paper", -g.epochs,
                                           g.budget_label)):
        budgets.setdefault(g.budget_label, []).append(g)
    return budgets


def budget_lines(groups: list[Group]) -> list[str]:
    """What a table holds: per budget the epochs trained against the recipe's and the seeds;
    where the paper is beside truncated or reduced runs, that its values are after its recipe."""
    lines = []
    for label, members in _by_budget(groups).items():
        g = members[0]
        finished = [m for m in members if m.runs]
        running = sum(len(m.running) for m in members)
        recipe = "the paper's recipe" if g.paper_dataset else f"the {g.dataset} preset"
        lines.append(f"- **Budget: {label}** — {plural(g.epochs, 'epoch')} "
                     f"{'trained' if finished else 'planned'} ({recipe}: "
                     f"{g.recipe['epochs']}); {len(finished)} configuration"
                     f"{'s' if len(finished) != 1 else ''} finished, {_seeds_text(members)}"
                     + (f"; {running} run{'s' if running != 1 else ''} in progress"
                        if running else "") + ".")
    with_paper = [g for g in groups if g.paper_row is not None]
    if with_paper:
        full = with_paper[0].recipe["epochs"]
        text = (f"- The paper's values are after its full recipe ({full} epochs), mean (std) of "
                f"{PAPER_SEEDS} seeds.")
        truncated = sorted({g.epochs for g in with_paper if g.truncated})
        if truncated:
            text += (f" Ours stop after {', '.join(map(str, truncated))} of those {full} epochs "
                     "(a prefix of the paper's run): Δ says how far a truncated run is from the "
                     "paper's end result, not a reproduction gap.")
        elif any(g.reduced for g in with_paper):
            text += " Rows with a reduced budget (bold) are not comparable at face value."
        lines.append(text)
    if any(not g.paper_experiment for g in groups):
        lines.append("- Runs of no paper experiment or dataset (labelled so): no paper values "
                     "to compare with.")
    return lines


def markdown_table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...],
                   progress: list[dict[str, Any]] = (), groups: list[Group] = ()) -> str:
    """A table's section: the budget statement, the finished rows in the paper's layout, the
    runs in progress, and the duplicates dropped."""
    config_cols = [COLUMN_NAMES[c] for c in columns]
    header = (["model"] + config_cols + ["budget", "seeds", "weights (k)", "paper (k)", "Δ weights",
                                         "GFLOPs", "paper GFLOPs", "test acc (%) (± std)", "paper",
                                         "Δ (pp)", "train acc (%)", "paper", "Δ (pp)", "img/s"])
    keep = [i for i, name in enumerate(header)  # no paper GFLOPs column where the paper has none
            if name != "paper GFLOPs" or any(r["paper_gflops"] is not None for r in rows)]
    header = [header[i] for i in keep]
    lines = [f"## {_md(title)}", ""] + budget_lines(list(groups)) + [""]
    notes: list[str] = []

    def noted(r: dict[str, Any]) -> str:
        model = _md(r["model"])
        if r["note"]:
            if r["note"] not in notes:
                notes.append(r["note"])
            model += f" [{notes.index(r['note']) + 1}]"
        return model

    if rows:
        lines += ["| " + " | ".join(header) + " |",
                  "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    else:
        lines.append("No finished runs yet.")
    running_train = False
    for r in rows:
        budget = f"**{r['budget']}**" if not r["comparable"] else r["budget"]
        train = _f(r["train_acc"])
        if r["train_acc_kind"] and r["train_acc_kind"] != "eval":
            train += f" ({r['train_acc_kind']})"
            running_train = True
        cells = [noted(r)] + [_f(r[c], "g", "-") for c in config_cols] + [
            budget, str(r["seeds"]), _f(r["weights_k"], ",.1f"), _f(r["paper_weights_k"], ","),
            _f(r["weights_rel_diff"], "+.1%"), _f(r["gflops"], ".3f"), _f(r["paper_gflops"]),
            _acc(r["test_acc"], r["test_acc_std"]),
            _acc(r["paper_test_acc"], r["paper_test_acc_std"]), _f(r["test_acc_diff"], "+.2f"),
            train, _f(r["paper_train_acc"]), _f(r["train_acc_diff"], "+.2f"),
            _f(r["images_per_s"], ",.0f") if r["images_per_s"] is not None
            else _md(r.get("images_per_s_by_device") or "–")]
        lines.append("| " + " | ".join(cells[i] for i in keep) + " |")
    lines.append("")
    if rows:
        lines.append("Test accuracy: final epoch, mean over seeds (sample std, ddof=1, in "
                     "brackets; none with one seed). Train accuracy: the final model in eval mode "
                     "on the un-augmented training set, as the paper measures it. Weights as the "
                     "paper counts them (table 2 leaves out the classifier of MgNet and MGiaD); "
                     "GFLOPs per image as our models compute them (`mgiad count --paper` shows the "
                     "paper's convention). Δ = ours − paper. Bold budget: not the paper's full "
                     "recipe.")
    if running_train:
        lines.append("(running): these runs' summaries predate the eval-mode measurement and hold "
                     "only the running accuracy of the last epoch (train mode, over its batches); "
                     "it is not the paper's measure, so no Δ.")
    if progress:
        lines += ["", "### Runs in progress (not in the statistics above)", "",
                  "| model | budget | seed | status | test acc (%) | paper | Δ (pp) | "
                  "train acc, running (%) | best test acc (%) | run |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in progress:
            lines.append("| " + " | ".join([
                noted(r), r["budget"], r["seed_list"], r["status"], _f(r["test_acc"]),
                _acc(r["paper_test_acc"], r["paper_test_acc_std"]), _f(r["test_acc_diff"], "+.2f"),
                _f(r["train_running_acc"]), _f(r["best_test_acc"]), f"`{r['runs']}`"]) + " |")
        lines.append("")
        lines.append("Latest finished epoch of each run; the running training accuracy is over "
                     "that epoch's batches in train mode (not the paper's train accuracy).")
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {_md(note)}")
    dups = [(g, lost, chosen) for g in groups for lost, chosen in g.duplicates]
    if dups:
        lines += ["", "Duplicate run directories (same configuration, budget, epochs and seed as "
                  "a run kept; not counted as seeds):"]
        lines += [f"- `{lost.directory}` ({run_status(lost, g.epochs)}): kept "
                  f"`{chosen.directory}` ({run_status(chosen, g.epochs)})"
                  for g, lost, chosen in dups]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS})


def figure_subtitle(groups: list[Group], in_progress: bool) -> str:
    """The figures' second title line: ours per budget with its seeds (and runs in progress),
    and the paper's recipe and seeds where its values are drawn."""
    parts = []
    for label, members in _by_budget(groups).items():
        finished = [g for g in members if g.runs]
        counts = sorted({len(g.seeds) for g in finished})
        running = sum(len(g.running) for g in members) if in_progress else 0
        if counts:
            text = (f"{counts[0]} seed{'s' if counts[0] != 1 else ''}" if len(counts) == 1 else
                    f"{counts[0]}–{counts[-1]} seeds") + (f" + {running} in progress"
                                                         if running else "")
        else:
            text = f"{running} run{'s' if running != 1 else ''} in progress, none finished"
        parts.append(f"ours: {label}, {text}")
    paper_rows = [g for g in groups if g.paper_row is not None]
    if paper_rows:
        parts.append(f"paper: {paper_rows[0].recipe['epochs']} ep, {PAPER_SEEDS} seeds")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------ report
def write_report(roots: Iterable[str | Path] | str | Path, out: str | Path,
                 experiments: Iterable[str] | None = None, figures: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Write the tables (markdown + CSV), figures (PNG + SVG) and ``report.md`` to ``out``."""
    from .experiments import EXPERIMENTS, get_experiment
    if isinstance(roots, (str, Path)):
        roots = [roots]
    roots = list(roots)
    runs, unreadable = load_runs(roots)
    wanted = None
    if experiments:
        wanted = {get_experiment(e).name if e != OTHER else OTHER for e in experiments}
    groups = [g for g in group_runs(runs) if wanted is None or g.experiment in wanted]
    out = Path(out)
    written: dict[str, list[Path]] = {"tables": [], "figures": []}
    if not groups:
        return written
    out.mkdir(parents=True, exist_ok=True)
    plotting = figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            log("figures skipped: matplotlib is not installed (pip install 'mgiad[plot]')")
            plotting = False
    finished = sum(len(g.runs) for g in groups)
    running = sum(len(g.running) for g in groups)
    dropped = [(lost, chosen) for g in groups for lost, chosen in g.duplicates]
    head = (f"{finished} finished run{'s' if finished != 1 else ''} "
            f"({sum(1 for g in groups if g.runs)} configurations) and {running} in progress, "
            f"from {', '.join(str(r) for r in roots)}")
    if dropped:
        head += f"; {len(dropped)} duplicate run director{'ies' if len(dropped) != 1 else 'y'} " \
                "dropped (listed under their table)"
    if unreadable:
        head += (f"; {len(unreadable)} director{'ies' if len(unreadable) != 1 else 'y'} naming no "
                 "known model or dataset skipped: " + ", ".join(f"`{p}`" for p in unreadable))
    if CORRUPT_METRICS:
        head += ("; unreadable metrics.jsonl lines skipped (a damaged file: the run's last.pt "
                 "holds the full history, `mgiad train --resume` rewrites it): "
                 + ", ".join(f"`{c}`" for c in CORRUPT_METRICS))
        for corrupt in CORRUPT_METRICS:
            log(f"warning: unreadable line skipped in {corrupt}")
    sections = ["# Results", "", head + ".", ""]
    by_table: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        by_table.setdefault((g.experiment, g.dataset), []).append(g)
    for (name, dataset), members in by_table.items():
        experiment = EXPERIMENTS.get(name)
        title = f"{experiment.title if experiment else name} — {dataset}"
        columns = experiment.columns if experiment else ("width_mult", "coarse_channels", "group_size")
        done = [g for g in members if g.runs]
        rows = [summarize_group(g) for g in done]
        progress = [r for g in members for r in progress_rows(g)]
        stem = out / f"{name}-{dataset}"
        md = markdown_table(title, rows, columns, progress, members)
        stem.with_suffix(".md").write_text(md)
        write_csv(rows + progress, stem.with_suffix(".csv"))
        written["tables"] += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        sections.append(md)
        if plotting:
            from .report_figures import plot_accuracy, plot_learning_curves
            if rows:
                paths = plot_accuracy(title, figure_subtitle(done, False), rows, stem)
                written["figures"] += paths
                sections += [f"![{_md(title)}: accuracy against weights]({paths[0].name})", ""]
            curves_stem = out / f"{name}-{dataset}-curves"
            paths = plot_learning_curves(title, figure_subtitle(members, True), curves_of(members),
                                         curves_stem)
            written["figures"] += paths
            sections += [f"![{_md(title)}: learning curves]({paths[0].name})", ""]
        log(f"{title}: {plural(len(rows), 'finished configuration')} "
            f"({plural(sum(len(g.runs) for g in done), 'run')}), {len(progress)} in progress "
            f"-> {stem.with_suffix('.md')}")
    (out / "report.md").write_text("\n".join(sections))
    written["tables"].append(out / "report.md")
    log(f"wrote {out / 'report.md'}")
    return written
