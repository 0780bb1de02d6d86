"""The tables: one row per configuration beside the paper's (markdown and CSV), runs in
progress, learning curves, budget lines."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ...training.progress import plural
from .grouping import Group, PAPER_SEEDS, _arg, _md, comparable_weights, display_name, family
from .runs import Run, _running, _running_of, mean_std, run_status, train_accuracy


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
    :func:`.curves.plot_learning_curves`: one dict per configuration and budget."""
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


SPEED_CAVEAT = ("img/s: each run's own training throughput on its device, averaged over its "
                "epochs, as measured while it trained: runs that shared their machine with other "
                "work (several runs at once, a busy node) ran slower, so read it as a rough "
                "figure, not a benchmark (`mgiad bench` measures speed alone on a machine).")


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
                     "recipe. " + SPEED_CAVEAT)
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
