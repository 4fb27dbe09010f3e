"""Charts of the HTML reports: data specs in, compact inline SVG out (matplotlib, Agg).

A chart is described by a small dataclass (:class:`LineChart`, :class:`HistogramChart`)
that the report builders fill from result objects, so what a page plots can be tested
as data; :func:`render_svg` draws it. The SVG keeps its text as text (``svg.fonttype:
none``: smaller, selectable, printable), carries no XML prolog or DOCTYPE (it is inlined
in HTML) and gives each series a ``gid`` (``<g id="...">``) so tests can count curves.
Element ids are salted with the chart's name: several SVGs on one page never clash and
the same data always gives the same SVG.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massface.optional import require

#: Matplotlib's default cycle, spelled out so that legends and galleries can agree.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: Line styles by series, so that identical curves (fp32 and fp16 of one model) still
#: show as two: a dashed line over a solid one.
LINESTYLES = ("-", "--", ":", "-.")
GENUINE_COLOUR = "#2ca02c"
IMPOSTOR_COLOUR = "#d62728"


@dataclass
class Series:
    """One curve: points (NaN breaks the line), an optional ±band, a legend label."""

    label: str
    x: np.ndarray
    y: np.ndarray
    band: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) at each x
    steps: bool = False           # draw as a step function (ROC-like empirical curves)
    marker: str | None = None     # e.g. "o" for few points


@dataclass
class Point:
    """A marked point (an operating point) with its own legend label."""

    label: str
    x: float
    y: float
    series: int = 0               # takes the colour of this series
    marker: str = "o"


@dataclass
class VLine:
    """A vertical marker line (a threshold); lines sharing a label get one legend entry."""

    x: float
    label: str
    colour: str = "#444444"


@dataclass
class Axes:
    """Axis labels, scales and limits."""

    xlabel: str
    ylabel: str
    xscale: str = "linear"
    yscale: str = "linear"
    xlim: tuple[float | None, float | None] | None = None
    ylim: tuple[float | None, float | None] | None = None


@dataclass
class LineChart:
    """Curves on one set of axes (ROC, DET, CMC, training curves...)."""

    name: str
    title: str
    axes: Axes
    series: list[Series]
    points: list[Point] = field(default_factory=list)
    legend: str = "best"


@dataclass
class HistogramChart:
    """Overlaid distributions (genuine vs impostor scores) with marker lines."""

    name: str
    title: str
    axes: Axes
    groups: list[tuple[str, np.ndarray, str]]   # (label, values, colour)
    bins: int = 80
    lines: list[VLine] = field(default_factory=list)
    density: bool = True
    legend: str = "best"


Chart = LineChart | HistogramChart

_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def _figure(width: float, height: float) -> Any:
    require("matplotlib", extra="report", purpose="the HTML report (plots)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=72)
    FigureCanvasAgg(fig)
    return fig


def _apply_axes(ax: Any, spec: Axes) -> None:
    ax.set_xlabel(spec.xlabel)
    ax.set_ylabel(spec.ylabel)
    empty = []
    for axis, scale, lim in (("x", spec.xscale, spec.xlim), ("y", spec.yscale, spec.ylim)):
        if scale == "log" and lim is None and not _has_positive(ax, axis):
            # a small, perfectly separated set: every FRR (or FAR) is 0, which a log axis
            # cannot show; matplotlib would refuse to scale it. Show the empty decades.
            getattr(ax, f"set_{axis}lim")(1e-4, 1.0)
            empty.append(axis)
        getattr(ax, f"set_{axis}scale")(scale)
    if empty:
        ax.text(0.5, 0.5, "every value is 0: nothing to show on a log axis",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, alpha=0.7)
    if spec.xlim is not None:
        ax.set_xlim(*spec.xlim)
    if spec.ylim is not None:
        ax.set_ylim(*spec.ylim)
    ax.grid(True, which="major", alpha=0.35)
    if "log" in (spec.xscale, spec.yscale):
        ax.grid(True, which="minor", alpha=0.12)


def _has_positive(ax: Any, axis: str) -> bool:
    """Whether a line drawn on ``ax`` has a finite value > 0 on ``axis`` ("x"/"y"); the
    log axes are the curves' (histograms are linear)."""
    for line in ax.get_lines():
        v = np.asarray(line.get_xdata() if axis == "x" else line.get_ydata(), dtype=float)
        if (np.isfinite(v) & (v > 0)).any():
            return True
    return False


def _draw_lines(ax: Any, chart: LineChart) -> None:
    for i, s in enumerate(chart.series):
        colour = COLOURS[i % len(COLOURS)]
        x, y = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
        ax.plot(x, y, color=colour, label=s.label, gid=f"{chart.name}-series-{i}",
                drawstyle="steps-post" if s.steps else "default", marker=s.marker,
                markersize=3, linewidth=1.4,
                linestyle=LINESTYLES[i % len(LINESTYLES)])
        if s.band is not None:
            ax.fill_between(x, s.band[0], s.band[1], color=colour, alpha=0.15, linewidth=0,
                            step="post" if s.steps else None, gid=f"{chart.name}-band-{i}")
    for j, p in enumerate(chart.points):
        ax.plot([p.x], [p.y], linestyle="none", marker=p.marker, markersize=7,
                markerfacecolor="none", markeredgewidth=1.6,
                color=COLOURS[p.series % len(COLOURS)], label=p.label,
                gid=f"{chart.name}-point-{j}")


def _draw_histogram(ax: Any, chart: HistogramChart) -> None:
    values = [np.asarray(v, dtype=float) for _, v, _ in chart.groups if np.size(v)]
    lo = min(float(v.min()) for v in values) if values else 0.0
    hi = max(float(v.max()) for v in values) if values else 1.0
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, chart.bins + 1)
    for i, (label, v, colour) in enumerate(chart.groups):
        if np.size(v) == 0:
            continue
        ax.hist(np.asarray(v, dtype=float), bins=edges, density=chart.density,
                histtype="stepfilled", alpha=0.45, color=colour, edgecolor=colour,
                label=f"{label} ({np.size(v):,})", gid=f"{chart.name}-group-{i}")
    labelled: set[str] = set()
    for k, line in enumerate(chart.lines):
        ax.axvline(line.x, color=line.colour, linewidth=0.9, linestyle="--",
                   label=None if line.label in labelled else line.label,
                   gid=f"{chart.name}-line-{k}")
        labelled.add(line.label)


def render_svg(chart: Chart, width: float = 6.4, height: float = 4.4) -> str:
    """The chart as an ``<svg>`` element ready to inline in HTML."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart.name,
                                "font.size": 9}):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        if isinstance(chart, LineChart):
            _draw_lines(ax, chart)
        else:
            _draw_histogram(ax, chart)
        _apply_axes(ax, chart.axes)
        ax.set_title(chart.title, fontsize=11)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc=chart.legend, fontsize=8, framealpha=0.85)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                  "Format": None, "Type": None})
    svg = _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1), count=1)
    svg = _drop_generic_ids(svg, chart.name)
    # the viewBox lets CSS scale the chart to its column (width 100%, height auto)
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)


def _drop_generic_ids(svg: str, name: str) -> str:
    """Remove matplotlib's ``id="line2d_1"``-style ids, which every chart repeats (an
    HTML page must not), keeping the ids something refers to (``#m1a2b...``, salted and
    unique) and the series' own ``gid``s."""
    used = set(re.findall(r"#([A-Za-z_][\w.-]*)", svg))

    def keep(m: re.Match[str]) -> str:
        ident = m.group(1)
        return m.group(0) if ident in used or ident.startswith(f"{name}-") else ""

    return re.sub(r' id="([^"]*)"', keep, svg)


def log_positive(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The points with x > 0 and y > 0 (what a log-log axis can show)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0)
    return x[keep], y[keep]
