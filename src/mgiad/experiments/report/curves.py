"""The report's learning curves: test accuracy and running training accuracy per epoch, for
runs finished and in progress, beside the paper's final values (conventions: :mod:`.figures`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .figures import _new_figure, _save, _title, accuracy_limits, mathtext

__all__ = ["curve_limits", "learning_curves_figure", "plot_learning_curves"]


def plot_learning_curves(title: str, subtitle: str, curves: list[dict[str, Any]],
                         path: Path) -> list[Path]:
    """:func:`learning_curves_figure`, saved as ``path`` .png and .svg."""
    return _save(learning_curves_figure(title, subtitle, curves), path)


def _plot_seeds(ax, c: dict[str, Any], key: str, col, style, values: list, means: list,
                notes: list) -> bool:
    """Configuration ``c``'s seeds on ``ax`` (thin lines; a thick mean with two or more), their
    ``(epoch, value)`` points added to ``values`` (and the mean's to ``means``); whether one of
    them is in progress (ending in
    a hollow circle, labelled later through ``notes``)."""
    any_progress = False
    drawn = [r for r in c["runs"] if r["epoch"] and any(v is not None for v in r[key])]
    several = len(drawn) >= 2
    for r in drawn:
        pairs = [(e, v) for e, v in zip(r["epoch"], r[key]) if v is not None]
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], color=col,
                linestyle=style, linewidth=0.9 if several else 1.6,
                alpha=0.55 if several else 0.95,  # few epochs: a line needs dots
                marker="o" if len(pairs) <= 10 else None, markersize=3)
        values += pairs
        if not r["finished"]:
            any_progress = True
            e, v = pairs[-1]
            ax.plot([e], [v], marker="o", markerfacecolor="white", color=col, markersize=6)
            notes.append((ax, e, v, f"s{r['seed']}: ep {e}/{r['target']}", col))
    if several:
        reached = min(len(r["epoch"]) for r in drawn)  # epochs every seed reached
        mean = [(drawn[0]["epoch"][i], sum(r[key][i] for r in drawn) / len(drawn))
                for i in range(reached) if all(r[key][i] is not None for r in drawn)]
        ax.plot([p[0] for p in mean], [p[1] for p in mean], color=col, linestyle=style,
                linewidth=2.2)
        means += mean
    return any_progress


def curve_limits(points: Sequence[tuple[float, float]], target: int,
                 references: Sequence[float] = (),
                 means: Sequence[tuple[float, float]] = ()) -> tuple[float, float]:
    """Accuracy limits of a learning-curve panel: the band the curves settle in, not their start.
    After the first tenth of the epochs (at least the first epoch), the lower limit is the 2nd
    percentile of the seeds' values, or the lowest mean (``means``) if lower: one seed's dip or
    the first epochs do not squash the band where the runs differ, and the mean curves stay in
    view from there on; so do ``references`` (the paper's values) and every value above."""
    early = max(1, target // 10)
    settled = sorted(v for e, v in points if e > early) or sorted(v for _, v in points)
    low = min([settled[int(0.02 * (len(settled) - 1))]] + [v for e, v in means if e > early])
    high = max([v for _, v in points] + list(references))
    return accuracy_limits([low] + list(references), [high], pad=0.05, min_span=2.0)


def _curve_axes(axes, target: int, values, means, notes, references) -> None:
    """Epoch axes, accuracy limits (:func:`curve_limits`; points below the axis are counted in
    its corner), grids and the labels of runs in progress."""
    from matplotlib.ticker import MaxNLocator
    for ax in axes:
        ax.set_xlim(0.5, target + 0.5)
        if values[ax]:
            low, high = curve_limits(values[ax], target, references[ax], means[ax])
            ax.set_ylim(low, high)
            below = sorted((v, e) for e, v in values[ax] if v < low)
            if below:
                ax.text(0.99, 0.015, f"{len(below)} point{'s' if len(below) > 1 else ''} below the "
                        f"axis (lowest {below[0][0]:.1f}%, epoch {below[0][1]:g})",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
        else:
            ax.text(0.5, 0.5, "no epoch finished yet (no metrics.jsonl)", transform=ax.transAxes,
                    ha="center", fontsize=10, color="0.4")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
    for ax, e, v, text, col in notes:  # below the point, above it near the axis' bottom
        low, high = ax.get_ylim()
        up = (v - low) / (high - low) < 0.12
        ax.annotate(text, (e, v), textcoords="offset points", xytext=(6, 5 if up else -12),
                    fontsize=7, color=col,
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.75, pad=0.5))


def learning_curves_figure(title: str, subtitle: str, curves: list[dict[str, Any]]):
    """Test accuracy (left) and running training accuracy (right) per epoch.

    ``curves``: one dict per configuration and budget: ``label``, ``budget``, ``paper_test_acc``
    (or None), ``paper_epochs``, and ``runs``: dicts with ``seed``, ``epoch``, ``test_acc``,
    ``train_running_acc`` (lists), ``target`` (epochs planned) and ``finished``. Seeds are thin
    lines, their mean (over the epochs every seed reached, with two or more seeds) a thick one;
    a run in progress ends in a hollow circle labelled with its epoch; the paper's final test
    accuracy is a dashed line in the configuration's colour.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    cmap = colormaps["tab10"]
    fig = _new_figure(13, 6.4)
    ax_test, ax_train = fig.subplots(1, 2)
    budgets = list(dict.fromkeys(c["budget"] for c in curves))
    lines = ["-", "-.", ":"]  # not dashed: dashes are the paper's reference lines here
    style = {b: lines[i % len(lines)] for i, b in enumerate(budgets)}
    configs = list(dict.fromkeys(c["label"] for c in curves))
    colour = {label: cmap(i % 10) for i, label in enumerate(configs)}
    values: dict[Any, list[tuple[float, float]]] = {ax_test: [], ax_train: []}
    references: dict[Any, list[float]] = {ax_test: [], ax_train: []}
    means: dict[Any, list[tuple[float, float]]] = {ax_test: [], ax_train: []}
    target = 1
    handles, labels = [], []
    notes: list[tuple[Any, float, float, str, Any]] = []   # runs in progress, labelled at the end
    any_progress = any_paper = False
    for c in curves:
        col = colour[c["label"]]
        for ax, key in ((ax_test, "test_acc"), (ax_train, "train_running_acc")):
            any_progress |= _plot_seeds(ax, c, key, col, style[c["budget"]], values[ax],
                                        means[ax], notes)
        target = max([target] + [r["target"] for r in c["runs"]]
                     + [max(r["epoch"]) for r in c["runs"] if r["epoch"]])
        if c.get("paper_test_acc") is not None:
            any_paper = True
            ax_test.axhline(c["paper_test_acc"], color=col, linestyle=(0, (5, 3)), linewidth=1.1,
                            alpha=0.9)
            references[ax_test].append(c["paper_test_acc"])
        done = sum(1 for r in c["runs"] if r["finished"])
        going = len(c["runs"]) - done
        counts = ([f"{done} seed{'s' if done != 1 else ''}"] if done else []) + (
            [f"{going} in progress" + ("" if any(r["epoch"] for r in c["runs"]) else
                                        ", no epoch yet")] if going else [])
        if c.get("paper_test_acc") is not None:
            counts.append(f"paper {c['paper_test_acc']:.2f}")
        text = c["label"] + (f" — {c['budget']}" if len(budgets) > 1 else "")
        handles.append(Line2D([], [], color=col, linestyle=style[c["budget"]], linewidth=2))
        labels.append(mathtext(f"{text} ({'; '.join(counts)})"))
    _curve_axes((ax_test, ax_train), target, values, means, notes, references)
    ax_test.set(ylabel="test accuracy (%)", title="test accuracy per epoch")
    ax_train.set(ylabel="training accuracy, running (%)",
                 title="running training accuracy per epoch (train mode, over the epoch)")
    if any_paper:
        epochs = sorted({c.get("paper_epochs") for c in curves if c.get("paper_test_acc")
                         is not None and c.get("paper_epochs")})
        handles.append(Line2D([], [], color="0.3", linestyle=(0, (5, 3)), linewidth=1.1))
        labels.append("paper's final test accuracy"
                      + (f" (after {', '.join(map(str, epochs))} epochs)" if epochs else ""))
    if any_progress:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white",
                              linestyle="none", markersize=6))
        labels.append("run in progress: latest epoch")
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8,
               frameon=False)
    _title(fig, title, subtitle)
    return fig
