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
  training speed, finished configurations only (see :mod:`.figures`);
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

from pathlib import Path
from typing import Callable, Iterable

from ...training.progress import plural
from ...utils.errors import install_hint
from .grouping import (OTHER, Group, _md, comparable_weights, deduplicate, display_name, family,
                       group_runs, load_runs)
from .runs import CORRUPT_METRICS, MALFORMED_RUNS, Run, mean_std, train_accuracy
from .tables import (curves_of, figure_subtitle, markdown_table, progress_rows, summarize_group,
                     write_csv)

__all__ = ["Run", "Group", "load_runs", "deduplicate", "group_runs", "write_report", "family",
           "display_name", "mean_std", "train_accuracy", "summarize_group", "progress_rows",
           "curves_of", "comparable_weights"]


def _headline(groups: list[Group], roots: list, unreadable: list[Path],
              log: Callable[[str], None]) -> str:
    """report.md's first line: what was read, and what was dropped or skipped (warned about)."""
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
    if MALFORMED_RUNS:
        head += ("; runs with malformed records skipped: "
                 + ", ".join(f"`{m}`" for m in MALFORMED_RUNS))
    if CORRUPT_METRICS:
        head += ("; unreadable metrics.jsonl lines skipped (a damaged file: the run's last.pt "
                 "holds the full history, `mgiad train --resume` rewrites it): "
                 + ", ".join(f"`{c}`" for c in CORRUPT_METRICS))
        for corrupt in CORRUPT_METRICS:
            log(f"warning: unreadable line skipped in {corrupt}")
    return head


def write_report(roots: Iterable[str | Path] | str | Path, out: str | Path,
                 experiments: Iterable[str] | None = None, figures: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Write the tables (markdown + CSV), figures (PNG + SVG) and ``report.md`` to ``out``."""
    from ..grid import EXPERIMENTS, get_experiment
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
    for bad in MALFORMED_RUNS:
        log(f"warning: run skipped, its records are malformed: {bad}")
    if not groups:
        return written
    out.mkdir(parents=True, exist_ok=True)
    plotting = figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            log("figures skipped: matplotlib is not installed; " + install_hint("plot", "matplotlib"))
            plotting = False
    sections = ["# Results", "", _headline(groups, roots, unreadable, log) + ".", ""]
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
            from .curves import plot_learning_curves
            from .figures import plot_accuracy
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
