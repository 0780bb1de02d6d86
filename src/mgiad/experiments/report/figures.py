"""The report's figures: test accuracy against weights and training speed; the conventions and
helpers every figure shares (the learning curves are in :mod:`.curves`).

Drawn with matplotlib's object API on an Agg canvas (no display, no pyplot state), from plain
row dicts (see :func:`mgiad.experiments.report.summarize_group`) and curve dicts (see
:func:`mgiad.experiments.report.curves_of`), so this module knows nothing about run directories.

Conventions every figure follows:

- text goes through :func:`mathtext`: ``MgNet^{A,B}`` prints as MgNet with a superscript A,B, and
  ``c_K``, ``g_s``, ``nu``, ``eta_pre`` as the symbols;
- a log axis gets several labelled ticks from :func:`log_ticks` (1-2-3-5 series, spaced so that
  neighbouring labels never touch) and unlabelled minor ticks;
- an accuracy axis spans the data (with the error bars and the paper's values), never above 100;
  a learning curve's spans the band the curves settle in (a dip below it is counted, not drawn);
- a log axis has a labelled tick at or beyond each end of the data;
- the title's second line states the budget(s) and the number of seeds of what is drawn.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

__all__ = ["mathtext", "log_ticks", "accuracy_limits", "human", "short_label", "accuracy_figure",
           "plot_accuracy", "learning_curves_figure", "plot_learning_curves", "FAMILY_ORDER"]

FAMILY_ORDER = ["ResNet", "MgNet", "MgNet grouped", "MGIC"]
_BUDGET_MARKERS = "os^v<>phX*"       # ours: one marker per budget
_PAPER_MARKER = "D"                  # the paper's points: hollow diamonds
_BUDGET_LINES = ["-", "--", ":", "-."]

_MATH = [(re.compile(r"\^\{([^}]*)\}"), r"$^{\1}$"),
         (re.compile(r"\^(\w)"), r"$^{\1}$"),
         (re.compile(r"\blambda="), r"$\\lambda$="),
         (re.compile(r"\bc_K\b"), r"$c_K$"),
         (re.compile(r"\bg_s\b"), r"$g_s$"),
         (re.compile(r"\beta_(pre|post)\b"), r"$\\eta_{\1}$"),
         (re.compile(r"\bnu="), r"$\\nu$=")]


def mathtext(text: str) -> str:
    """``text`` for a matplotlib label: ``MgNet^{A,B}`` -> ``MgNet$^{A,B}$``, ``g_s`` ->
    ``$g_s$``, ...; a literal ``$`` is escaped so it never starts math mode by accident."""
    text = str(text).replace("$", r"\$")
    for pattern, replacement in _MATH:
        text = pattern.sub(replacement, text)
    return text


def human(value: float, _pos: Any = None) -> str:
    """Axis labels: 300, 1.5k, 30k, 3M."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


_MANTISSAS = ((1, 1.5, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 4, 5, 7), (1, 2, 3, 5), (1, 2, 5), (1, 3),
              (1,))


def log_ticks(low: float, high: float, max_ticks: int = 6, min_gap: float = 0.1) -> list[float]:
    """Labelled tick values for a log axis from ``low`` to ``high``.

    The densest of the series 1-1.5-2-3-..., 1-2-3-4-5-7, 1-2-3-5, 1-2-5, 1-3, 1 (times powers
    of ten) that has at least two and at most ``max_ticks`` values inside the range, with
    neighbours at least ``min_gap`` of the axis apart (in log units, so labels do not touch).
    Several decades: every k-th power of ten. Less than one step of any series: linear steps.
    """
    if not (0 < low < high):
        raise ValueError(f"log_ticks needs 0 < low < high, got {low}, {high}")
    span = math.log10(high / low)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))

    def spaced(ticks: list[float]) -> bool:
        gaps = [math.log10(b / a) / span for a, b in zip(ticks, ticks[1:])]
        return 2 <= len(ticks) <= max_ticks and min(gaps) >= min_gap

    for mantissas in _MANTISSAS:
        ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in mantissas
                 if low <= m * 10.0 ** e <= high]
        if spaced(ticks):
            return ticks
    decades = [10.0 ** e for e in range(first, last + 1) if low <= 10.0 ** e <= high]
    if len(decades) >= 2:
        return decades[::math.ceil(len(decades) / max_ticks)]
    from matplotlib.ticker import MaxNLocator
    for bins in range(max(max_ticks - 1, 1), 0, -1):
        ticks = [float(t) for t in MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10])
                 .tick_values(low, high) if low <= t <= high]
        if spaced(ticks):
            return ticks
    return [low, high]


def accuracy_limits(lows: Sequence[float], highs: Sequence[float], pad: float = 0.08,
                    min_span: float = 1.0) -> tuple[float, float]:
    """Limits of an accuracy axis (percent) that show every value from ``lows`` to ``highs``
    with a margin, at least ``min_span`` points wide (one point is not blown up into a false
    precision), within [0, 100]: the axis never promises more than 100%."""
    low, high = min(lows), max(highs)
    margin = max(pad * (high - low), 0.15)
    low, high = low - margin, high + margin
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    if high > 100.0:  # shift down (the span kept) to end at 100
        low, high = low - (high - 100.0), 100.0
    return max(0.0, low), high


def _log_limits(values: Sequence[float], pad: float = 0.12) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high / low < 1.5:  # one point or a few close ones: show a readable stretch around them
        middle = math.sqrt(low * high)
        low, high = middle / 1.6, middle * 1.6
    factor = (high / low) ** pad
    return low / factor, high * factor


_NICE = (1, 1.5, 2, 3, 4, 5, 6, 8, 10)


def _nice_tick(value: float, below: bool) -> float:
    """The nearest value of the series 1-1.5-2-3-4-5-6-8 (times a power of ten) at or below
    (``below``) or at or above ``value``."""
    scale = 10.0 ** math.floor(math.log10(value))
    series = [m * scale for m in _NICE]
    return (max(t for t in series if t <= value * (1 + 1e-9)) if below else
            min(t for t in series if t >= value * (1 - 1e-9)))


def _log_axis(ax, fig, values: Sequence[float]) -> None:
    """A log x axis over ``values`` with labelled ticks (:func:`log_ticks`), widened where
    needed so that a labelled tick lies at or beyond each end of the data: no point sits left
    of the first label or right of the last."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    low, high = _log_limits(values)
    width = ax.get_position().width * fig.get_figwidth()  # inches
    min_gap = 0.55 / width
    ticks = log_ticks(low, high, max_ticks=max(3, int(width / 0.8)), min_gap=min_gap)
    for end, below in ((0, True), (-1, False)):
        data = min(values) if below else max(values)
        if (data < ticks[0]) if below else (data > ticks[-1]):
            tick = _nice_tick(data, below)
            low, high = (min(low, tick / 1.04), high) if below else (low, max(high, tick * 1.04))
            neighbour = ticks[end]
            if abs(math.log10(neighbour / tick)) < min_gap * math.log10(high / low):
                ticks.remove(neighbour)  # too close to label both
            ticks = [tick] + ticks if below else ticks + [tick]
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(human))
    ax.xaxis.set_minor_locator(LogLocator(subs="all"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> list[Path]:
    written = []
    for suffix in (".png", ".svg"):
        out = path.with_suffix(suffix)
        fig.savefig(out, dpi=150)
        written.append(out)
    return written


def _title(fig, title: str, subtitle: str) -> None:
    fig.suptitle(mathtext(title) + ("\n" + mathtext(subtitle) if subtitle else ""), fontsize=11)


def _family_colours(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]

    def later(name: str):
        head, _, tail = name.partition("=")
        return (head, int(tail) if tail.isdigit() else 0, name)
    ordered = [n for n in FAMILY_ORDER if n in names] + sorted(
        (n for n in names if n not in FAMILY_ORDER), key=later)
    return {n: cmap(i % 10) for i, n in enumerate(ordered)}


def short_label(row: dict[str, Any]) -> str:
    """A point's annotation: the model's name and its lambda, c_K, g_s where set."""
    names = {"lambda": "\u03bb", "c_K": "c_K", "g_s": "g_s"}
    parts = [f"{names[n]}={row[n]:g}" if isinstance(row[n], float) else f"{names[n]}={row[n]}"
             for n in ("lambda", "c_K", "g_s") if row.get(n) is not None
             and not (n == "lambda" and row[n] == 1)]
    return row["model"].split(" ")[0] + (" " + " ".join(parts) if parts else "")


# ------------------------------------------------------------------ accuracy against weights
def plot_accuracy(title: str, subtitle: str, rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """:func:`accuracy_figure`, saved as ``path`` .png and .svg."""
    return _save(accuracy_figure(title, subtitle, rows), path)


def _throughput(rows: list[dict[str, Any]]) -> tuple[list[Any], str]:
    """Each row's training images/s for the speed panel and the device they were measured on:
    where seeds ran on several devices, the one device every row has (of those, the one with the
    most runs), so that CPU and GPU speeds never share the axis."""
    counts: Counter = Counter()
    for r in rows:
        counts.update(r.get("speed_runs") or {})
    for device, _ in counts.most_common():
        if all(device in (r.get("speeds") or {}) for r in rows):
            return [r["speeds"][device] for r in rows], device
    return ([r.get("images_per_s") for r in rows],
            ", ".join(sorted({str(r.get("device", "?")) for r in rows})))


def accuracy_figure(title: str, subtitle: str, rows: list[dict[str, Any]]):
    """Test accuracy against weights (log) and against measured training images/s (log).

    ``rows``: finished configurations (keys of :func:`mgiad.experiments.report.summarize_group` plus
    ``family``). Colour: the family; marker (and line on the weights panel): the budget, named
    in the legend; hollow diamonds: the paper's values (left panel). Bars: std over seeds.
    """
    fams = sorted({r["family"] for r in rows})
    colour = _family_colours(fams)
    budgets = list(dict.fromkeys(r["budget"] for r in sorted(rows, key=lambda r: (  # as tables
        not r.get("comparable", False), r.get("budget_tag", "paper") != "paper",
        -(r.get("epochs") or 0), r["budget"]))))
    marker = {b: _BUDGET_MARKERS[i % len(_BUDGET_MARKERS)] for i, b in enumerate(budgets)}
    line = {b: _BUDGET_LINES[i % len(_BUDGET_LINES)] for i, b in enumerate(budgets)}
    fig = _new_figure(13, 6.4)
    ax_w, ax_t = fig.subplots(1, 2)
    annotate = len(rows) <= 14
    lows: dict[Any, list[float]] = {ax_w: [], ax_t: []}
    highs: dict[Any, list[float]] = {ax_w: [], ax_t: []}
    xs: dict[Any, list[float]] = {ax_w: [], ax_t: []}
    notes: list[tuple[Any, float, float, str, Any]] = []   # point labels, placed at the end
    speeds, devices = _throughput(rows)
    rows = [{**r, "throughput": v} for r, v in zip(rows, speeds)]
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["family"], r["budget"]), []).append(r)
    for (fam, budget), members in series.items():
        for ax, xkey in ((ax_w, "weights"), (ax_t, "throughput")):
            pts = sorted((r for r in members if r.get(xkey) and r["test_acc"] is not None),
                         key=lambda r: r[xkey])
            if not pts:
                continue
            x = [r[xkey] for r in pts]
            y = [r["test_acc"] for r in pts]
            err = [r["test_acc_std"] or 0.0 for r in pts]
            ax.errorbar(x, y, yerr=err, color=colour[fam], marker=marker[budget], capsize=3,
                        linestyle=line[budget] if ax is ax_w else "none", markersize=6)
            xs[ax] += x
            lows[ax] += [a - e for a, e in zip(y, err)]
            highs[ax] += [a + e for a, e in zip(y, err)]
            if annotate:
                for r in pts:
                    notes.append((ax, r[xkey], r["test_acc"], mathtext(short_label(r)),
                                  colour[fam]))
    paper_seen = _paper_points(ax_w, rows, colour, xs[ax_w], lows[ax_w], highs[ax_w])
    _budget_legend(fig, fams, colour, budgets, marker, line, paper_seen)
    ax_w.set(xlabel="weights (log scale)", ylabel="test accuracy (%)",
             title="test accuracy vs weights (bars: std over seeds)")
    ax_t.set(xlabel=f"training throughput, images/s on {devices} (log scale)",
             ylabel="test accuracy (%)",
             title="test accuracy vs training speed, as the runs measured it\n"
                   "(machines possibly shared with other work: rough, not a benchmark)")
    _title(fig, title, subtitle)
    _finish_axes(fig, (ax_w, ax_t), xs, lows, highs, notes)
    return fig


def _paper_points(ax, rows, colour, xs: list, lows: list, highs: list) -> set:
    """The paper's values as hollow diamonds on the weights panel; the rows it has drawn."""
    paper_seen = set()
    for r in rows:
        if r.get("paper_test_acc") is None or not r.get("paper_weights_k") or \
                r.get("paper_row") in paper_seen:
            continue
        paper_seen.add(r.get("paper_row"))
        x, y, err = r["paper_weights_k"] * 1e3, r["paper_test_acc"], r["paper_test_acc_std"] or 0.0
        ax.errorbar([x], [y], yerr=[err], color=colour[r["family"]], marker=_PAPER_MARKER,
                    markerfacecolor="none", markersize=8, linestyle="none", capsize=3)
        xs.append(x)
        lows.append(y - err)
        highs.append(y + err)
    return paper_seen


def _budget_legend(fig, fams, colour, budgets, marker, line, paper_seen) -> None:
    """One entry per family (colour), per budget (marker, line) and the paper's (hollow)."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=colour[f], linewidth=3) for f in _family_colours(fams)]
    labels = [mathtext(f) for f in _family_colours(fams)]
    for b in budgets:
        handles.append(Line2D([], [], color="0.3", marker=marker[b], linestyle=line[b],
                              markersize=6))
        labels.append(mathtext(f"ours: {b}"))
    if paper_seen:
        handles.append(Line2D([], [], color="0.3", marker=_PAPER_MARKER, markerfacecolor="none",
                              linestyle="none", markersize=8))
        labels.append("paper (hollow)")
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8,
               frameon=False)


def _finish_axes(fig, axes, xs, lows, highs, notes) -> None:
    """Grids, accuracy limits, log axes (after a first layout) and the point labels."""
    for ax in axes:
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        if xs[ax]:
            ax.set_ylim(*accuracy_limits(lows[ax], highs[ax]))
    fig.canvas.draw()  # lay out first: the tick spacing depends on the axes' final widths
    for ax in axes:
        if xs[ax]:
            _log_axis(ax, fig, xs[ax])
        else:
            ax.text(0.5, 0.5, "no measurement", transform=ax.transAxes, ha="center")
    for ax, x, y, text, col in notes:  # labels of points in the right part point leftwards
        low, high = ax.get_xlim()
        right = math.log(x / low) / math.log(high / low) > 0.6
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(-6 if right else 6, 4),
                    ha="right" if right else "left", fontsize=7, color=col)
