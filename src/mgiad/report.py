"""Tables and figures from finished runs, beside the paper's values.

:func:`write_report` reads every run directory holding a ``summary.json`` (with the
``experiment.json`` that ``mgiad reproduce`` writes, or a plain ``mgiad train`` run), groups the
seeds of each (experiment, dataset, configuration, budget), and writes

- ``<experiment>-<dataset>.md`` / ``.csv``: the paper's layout (model, lambda / c_K / g_s, weights,
  GFLOPs, test accuracy mean (std), train accuracy) beside the paper's row and the difference;
- ``<experiment>-<dataset>.png`` / ``.svg``: test accuracy against weights (log scale), one series
  per family, error bars from the seeds, the paper's points hollow; and a wall-clock panel,
  test accuracy against measured training images/s (needs matplotlib, drawn without a display);
- ``report.md``: every table and figure.

Statistics: the mean over seeds and the *sample* standard deviation (``ddof=1``); with a single
seed the standard deviation is undefined and left empty (no error bar). Test accuracy is the
final epoch's (``final_test_acc``); the best epoch's is in the CSV. A run whose budget differs
from the paper's recipe (fewer epochs, another schedule, ...) is its own row, labelled with it.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paper

__all__ = ["Run", "Group", "load_runs", "group_runs", "write_report", "family", "display_name",
           "mean_std"]

OTHER = "runs"  # experiment name for runs that no ``mgiad reproduce`` started


@dataclass
class Run:
    directory: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    experiment: dict[str, Any]
    metrics: list[dict[str, Any]]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_runs(roots: Iterable[str | Path]) -> tuple[list[Run], list[Path]]:
    """Finished runs under ``roots`` (any depth), and the unfinished run directories seen."""
    runs, unfinished, seen = [], [], set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        candidates = {p.parent for p in root.rglob("config.json")} | \
            {p.parent for p in root.rglob("summary.json")}
        for directory in sorted(candidates):
            if directory.resolve() in seen:
                continue
            seen.add(directory.resolve())
            summary = _read_json(directory / "summary.json")
            if not summary:
                if (directory / "last.pt").exists() or (directory / "experiment.json").exists():
                    unfinished.append(directory)
                continue
            metrics = []
            if (directory / "metrics.jsonl").is_file():
                for line in (directory / "metrics.jsonl").read_text().splitlines():
                    if line.strip():
                        metrics.append(json.loads(line))
            runs.append(Run(directory, summary, _read_json(directory / "config.json"),
                            _read_json(directory / "experiment.json"), metrics))
    return runs, unfinished


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); ``None`` for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


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
    """The model column: ``ResNet20``, ``MgNet^{A,B} 16-32-64 nu=3``, ``MGiaD 16-32-64``, ..."""
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


# ---------------------------------------------------------------------------------- grouping
@dataclass
class Group:
    """The seeds of one configuration at one budget."""

    experiment: str
    dataset: str
    key: str
    label: str
    model: str
    model_args: dict[str, Any]
    budget: str               # tag: "paper", "e5-ss2", ...
    epochs: int
    recipe: dict[str, Any]    # the paper's recipe for the dataset
    overrides: dict[str, Any]
    paper_row: paper.PaperRow | None
    note: str
    runs: list[Run] = field(default_factory=list)

    @property
    def reduced(self) -> bool:
        return self.budget != "paper"

    @property
    def budget_label(self) -> str:
        if not self.reduced:
            return f"paper ({self.recipe['epochs']} ep)"
        parts = [f"{self.epochs} of {self.recipe['epochs']} ep"] if \
            self.epochs != self.recipe["epochs"] else []
        names = {"batch_size": "batch {}", "lr": "lr {}", "schedule": "{}",
                 "step_size": "lr step every {} ep"}
        parts += [names[k].format(v) for k, v in self.overrides.items() if k in names]
        return ", ".join(parts) or self.budget

    def values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.runs if r.summary.get(key) is not None]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(r.config.get("train", {}).get("seed", r.experiment.get("seed", 0)))
                      for r in self.runs)


_weights_cache: dict[str, int] = {}


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


def _budget_of(run: Run, recipe: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if run.experiment.get("budget"):
        budget = run.experiment["budget"]
        return budget.get("tag", "paper"), dict(budget.get("overrides", {}))
    from .experiments import Budget  # a plain `mgiad train` run: compare with the recipe
    train = run.config.get("train", {})
    overrides = {k: train.get(k) for k in recipe if train.get(k) is not None
                 and train.get(k) != recipe[k]}
    budget = Budget(**overrides)
    return budget.tag, budget.overrides()


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs by (experiment, dataset, configuration, budget), in the experiments' order."""
    from .experiments import EXPERIMENTS, config_slug, paper_recipe
    groups: dict[tuple, Group] = {}
    recipes: dict[str, dict[str, Any]] = {}
    for run in runs:
        info = run.experiment
        dataset = run.summary.get("dataset") or run.config.get("dataset")
        model = run.summary.get("model") or run.config.get("model")
        args = dict(run.config.get("model_args") or info.get("model_args") or {})
        if dataset not in recipes:
            recipes[dataset] = paper_recipe(dataset)
        tag, overrides = _budget_of(run, recipes[dataset])
        experiment = info.get("experiment", OTHER)
        key = info.get("key") or config_slug(model, run.config.get("train", {}).get("model_args", {}))
        epochs = int(run.summary.get("epochs", 0))
        gkey = (experiment, dataset, key, tag, epochs)
        if gkey not in groups:
            label = info.get("label") or display_name(model, args)
            groups[gkey] = Group(experiment, dataset, key, label, model, args, tag, epochs,
                                 recipes[dataset], overrides, _paper_row(info, dataset),
                                 info.get("note", ""))
        groups[gkey].runs.append(run)

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


def summarize_group(group: Group) -> dict[str, Any]:
    """One row of the table, as plain values (CSV) — the markdown formats the same dict."""
    row = group.paper_row
    exclude_head = row.exclude_head if row is not None else False
    try:
        weights = comparable_weights(group.model, group.model_args, exclude_head)
    except Exception:  # a model we cannot rebuild here: fall back to the run's own count
        weights = int(group.runs[0].summary.get("weights", 0))
    test, test_std = mean_std(group.values("final_test_acc"))
    train, train_std = mean_std(group.values("final_train_acc"))
    best, best_std = mean_std(group.values("best_test_acc"))
    speed, _ = mean_std(group.values("images_per_s"))
    wall, _ = mean_std(group.values("wall_seconds"))
    flops = group.runs[0].summary.get("flops")
    result = {
        "experiment": group.experiment, "dataset": group.dataset, "label": group.label,
        "model": display_name(group.model, group.model_args), "architecture": group.model,
        "lambda": _config_value(group, "width_mult"), "c_K": _config_value(group, "coarse_channels"),
        "g_s": _config_value(group, "group_size"),
        "budget": group.budget_label, "budget_tag": group.budget, "epochs": group.epochs,
        "paper_epochs": group.recipe["epochs"], "reduced_budget": group.reduced,
        "seeds": len(group.runs), "seed_list": " ".join(map(str, group.seeds)),
        "weights": weights, "weights_counted_without_classifier": exclude_head,
        "weights_k": weights / 1e3,
        "paper_weights_k": row.weights_k if row else None,
        "weights_rel_diff": weights / (row.weights_k * 1e3) - 1 if row else None,
        "gflops": flops / 1e9 if flops else None, "paper_gflops": row.gflops if row else None,
        "test_acc": test, "test_acc_std": test_std,
        "paper_test_acc": row.test if row else None, "paper_test_acc_std": row.test_std if row else None,
        "test_acc_diff": test - row.test if row and row.test is not None else None,
        "train_acc": train, "train_acc_std": train_std,
        "paper_train_acc": row.train if row else None,
        "train_acc_diff": train - row.train if row and row.train is not None else None,
        "best_test_acc": best, "best_test_acc_std": best_std,
        "images_per_s": speed, "wall_seconds": wall,
        "device": ",".join(sorted({str(r.summary.get("device", "?")) for r in group.runs})),
        "paper_row": row.label if row else None,
        "note": "; ".join(n for n in (group.note, row.anomaly.reason if row and row.anomaly
                                      and row.anomaly.reason not in group.note else "") if n),
        "runs": " ".join(str(r.directory) for r in group.runs),
    }
    return result


CSV_FIELDS = ["experiment", "dataset", "label", "model", "architecture", "lambda", "c_K", "g_s",
              "budget", "budget_tag", "epochs", "paper_epochs", "reduced_budget", "seeds",
              "seed_list", "weights", "weights_counted_without_classifier", "weights_k",
              "paper_weights_k", "weights_rel_diff", "gflops", "paper_gflops", "test_acc",
              "test_acc_std", "paper_test_acc", "paper_test_acc_std", "test_acc_diff", "train_acc",
              "train_acc_std", "paper_train_acc", "train_acc_diff", "best_test_acc",
              "best_test_acc_std", "images_per_s", "wall_seconds", "device", "paper_row", "note",
              "runs"]


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


def markdown_table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    config_cols = [COLUMN_NAMES[c] for c in columns]
    header = (["model"] + config_cols + ["budget", "seeds", "weights (k)", "paper (k)", "Δ weights",
                                         "GFLOPs", "paper GFLOPs", "test acc (%) (± std)", "paper",
                                         "Δ (pp)", "train acc (%)", "paper", "Δ (pp)", "img/s"])
    keep = [i for i, name in enumerate(header)  # no paper GFLOPs column where the paper has none
            if name != "paper GFLOPs" or any(r["paper_gflops"] is not None for r in rows)]
    header = [header[i] for i in keep]
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    notes: list[str] = []
    for r in rows:
        model = r["model"]
        if r["note"]:
            if r["note"] not in notes:
                notes.append(r["note"])
            model += f" [{notes.index(r['note']) + 1}]"
        budget = f"**{r['budget']}**" if r["reduced_budget"] else r["budget"]
        cells = [model] + [_f(r[c], "g", "-") for c in config_cols] + [
            budget, str(r["seeds"]), f"{r['weights_k']:,.1f}", _f(r["paper_weights_k"], ","),
            _f(r["weights_rel_diff"], "+.1%"), _f(r["gflops"], ".3f"), _f(r["paper_gflops"]),
            _acc(r["test_acc"], r["test_acc_std"]),
            _acc(r["paper_test_acc"], r["paper_test_acc_std"]), _f(r["test_acc_diff"], "+.2f"),
            _f(r["train_acc"]), _f(r["paper_train_acc"]), _f(r["train_acc_diff"], "+.2f"),
            _f(r["images_per_s"], ",.0f")]
        lines.append("| " + " | ".join(cells[i] for i in keep) + " |")
    lines.append("")
    reduced = sorted({r["budget"] for r in rows if r["reduced_budget"]})
    if reduced:
        lines.append(f"**Reduced budget** (bold): {'; '.join(reduced)} instead of the paper's "
                     "recipe; not comparable with the paper's accuracies at face value.")
    lines.append("Test accuracy: final epoch, mean over seeds (sample std, ddof=1, in brackets; "
                 "none with one seed). Weights as the paper counts them (table 2 leaves out the "
                 "classifier of MgNet and MGiaD); GFLOPs per image as our models compute them "
                 "(`mgiad count --paper` shows the paper's convention). Δ = ours − paper.")
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {note}")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_FIELDS})


# ----------------------------------------------------------------------------------- figures
_FAMILY_ORDER = ["ResNet", "MgNet", "MgNet grouped", "MGIC"]
_MARKERS = "osD^v<>phX*"


def _family_style(names: list[str]) -> dict[str, tuple[Any, str]]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    ordered = [n for n in _FAMILY_ORDER if n in names] + sorted(
        (n for n in names if n not in _FAMILY_ORDER),
        key=lambda n: (n.split("=")[0], int(n.split("=")[1]) if n.split("=")[-1].isdigit() else 0))
    return {n: (cmap(i % 10), _MARKERS[i % len(_MARKERS)]) for i, n in enumerate(ordered)}


def plot_groups(title: str, groups: list[Group], rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Two panels: test accuracy against weights (log), and against training images/s (log)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fams = [family(g.model, g.model_args) for g in groups]
    style = _family_style(sorted(set(fams)))
    budgets = sorted({r["budget"] for r in rows}, key=lambda b: not b.startswith("paper"))
    dashes = {b: ("-" if i == 0 else ["--", ":", "-."][(i - 1) % 3]) for i, b in enumerate(budgets)}
    fig = Figure(figsize=(13, 5.2))
    FigureCanvasAgg(fig)
    ax_w, ax_t = fig.subplots(1, 2)
    series: dict[tuple[str, str], list[tuple[Group, dict]]] = {}
    for g, fam, r in zip(groups, fams, rows):
        series.setdefault((fam, r["budget"]), []).append((g, r))
    annotate = len(rows) <= 14
    for (fam, budget), members in series.items():
        color, marker = style[fam]
        for ax, xkey in ((ax_w, "weights"), (ax_t, "images_per_s")):
            pts = sorted(((r[xkey], r["test_acc"], r["test_acc_std"] or 0.0, r) for _, r in members
                          if r[xkey]), key=lambda p: p[0])
            if not pts:
                continue
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                        color=color, marker=marker, capsize=3,
                        linestyle=dashes[budget] if ax is ax_w else "none",
                        markersize=6, label=f"{fam} ({budget})" if len(budgets) > 1 else fam)
            if annotate:
                for x, y, _, r in pts:
                    ax.annotate(_short(r), (x, y), textcoords="offset points", xytext=(4, 4),
                                fontsize=7, color=color)
    paper_seen = set()
    for g, fam in zip(groups, fams):
        row = g.paper_row
        if row is None or row.test is None or (g.key, g.dataset) in paper_seen:
            continue
        paper_seen.add((g.key, g.dataset))
        color, marker = style[fam]
        ax_w.errorbar([row.weights_k * 1e3], [row.test], yerr=[row.test_std or 0.0], color=color,
                      marker=marker, markerfacecolor="none", markersize=9, linestyle="none",
                      capsize=3, alpha=0.9)
    handles, labels = ax_w.get_legend_handles_labels()
    if paper_seen:
        handles += [Line2D([], [], color="0.3", marker="o", linestyle="none", markersize=6),
                    Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                           linestyle="none", markersize=9)]
        labels += ["ours (filled; bars: std over seeds)", "paper (hollow)"]
    ax_w.legend(handles, labels, fontsize=8, loc="best")
    devices = ", ".join(sorted({r["device"] for r in rows}))
    ax_w.set(xscale="log", xlabel="weights (log scale)", ylabel="test accuracy (%)",
             title="accuracy vs weights")
    ax_t.set(xscale="log", xlabel=f"training throughput, images/s on {devices} (log scale)",
             ylabel="test accuracy (%)", title="accuracy vs measured training speed")
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for ax in (ax_w, ax_t):
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.2, y=0.1)
        ax.xaxis.set_major_formatter(FuncFormatter(_human))
        low, high = ax.get_xlim()
        ax.xaxis.set_minor_formatter(FuncFormatter(_human) if high / max(low, 1e-12) < 20
                                     else NullFormatter())
    fig.suptitle(title)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".svg"):
        out = path.with_suffix(suffix)
        fig.savefig(out, dpi=150)
        written.append(out)
    return written


def _short(r: dict[str, Any]) -> str:
    names = {"lambda": "\u03bb", "c_K": "c_K", "g_s": "g_s"}
    parts = [f"{names[n]}={r[n]:g}" if isinstance(r[n], float) else f"{names[n]}={r[n]}"
             for n in ("lambda", "c_K", "g_s") if r[n] is not None and not (n == "lambda" and r[n] == 1)]
    return r["model"].split(" ")[0] + (" " + " ".join(parts) if parts else "")


def _human(value: float, _pos=None) -> str:
    """Axis labels: 300, 3k, 30k, 3M."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


# ------------------------------------------------------------------------------------ report
def write_report(roots: Iterable[str | Path] | str | Path, out: str | Path,
                 experiments: Iterable[str] | None = None, figures: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Write the tables (markdown + CSV), figures (PNG + SVG) and ``report.md`` to ``out``."""
    from .experiments import EXPERIMENTS, get_experiment
    if isinstance(roots, (str, Path)):
        roots = [roots]
    runs, unfinished = load_runs(roots)
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
    sections = ["# Results", "",
                f"{len(runs)} finished runs from {', '.join(str(r) for r in roots)}"
                + (f"; {len(unfinished)} unfinished (no summary.json), not included"
                   if unfinished else "") + ".", ""]
    by_table: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        by_table.setdefault((g.experiment, g.dataset), []).append(g)
    for (name, dataset), members in by_table.items():
        experiment = EXPERIMENTS.get(name)
        title = f"{experiment.title if experiment else name} — {dataset}"
        columns = experiment.columns if experiment else ("width_mult", "coarse_channels", "group_size")
        rows = [summarize_group(g) for g in members]
        stem = out / f"{name}-{dataset}"
        md = markdown_table(title, rows, columns)
        stem.with_suffix(".md").write_text(md)
        write_csv(rows, stem.with_suffix(".csv"))
        written["tables"] += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        sections.append(md)
        if plotting:
            paths = plot_groups(title, members, rows, stem)
            written["figures"] += paths
            sections += [f"![{title}]({paths[0].name})", ""]
        log(f"{title}: {len(rows)} configurations, {sum(len(g.runs) for g in members)} runs "
            f"-> {stem.with_suffix('.md')}")
    (out / "report.md").write_text("\n".join(sections))
    written["tables"].append(out / "report.md")
    log(f"wrote {out / 'report.md'}")
    return written
