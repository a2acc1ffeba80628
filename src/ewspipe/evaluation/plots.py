"""The report's figures as PNG bytes: metric curves, calibration, PRIO-GRID error maps.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global
backend or figure state) under one fixed style, and saved without the "Software" PNG text
chunk, so the same data always gives the same bytes. Baselines are drawn dashed in greys, the
other models solid in colours, so a model that does not beat its yardsticks stands out; the
line the page is about (the deployed ensemble) is drawn thick and on top of the others.

Loss curves use a log y axis (symlog when a value is 0): an all-zeros baseline scores an
order of magnitude worse than the models, and on a linear axis it squeezes their curves flat.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from ewspipe.arrays import Floats
from ewspipe.panel.months import month_label
from ewspipe.panel.priogrid import CELL_DEGREES, rowcol_from_gid

__all__ = ["Line", "calibration_figure", "draw_metric", "error_map_figure", "metric_figure",
           "y_scale"]

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": 100,
    "image.cmap": "viridis",
    "path.simplify": False,
}
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                 "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
BASELINE_GREYS = ("#555555", "#888888", "#aaaaaa", "#333333")
BASELINE_DASHES = ((5, 2), (2, 2), (7, 2, 2, 2), (3, 1, 1, 1))
_PNG_METADATA = {"Software": None}


@dataclass(frozen=True)
class Line:
    """One model's curve: ``y`` over ``x``; ``baseline`` selects the dashed grey style.

    ``note`` is added to the legend label in brackets (e.g. "deployed ensemble");
    ``on_top`` draws the line thick and above every other one.
    """

    label: str
    x: Floats
    y: Floats
    baseline: bool = False
    note: str = ""
    on_top: bool = False


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_METADATA)
    return buf.getvalue()


def _styles(lines: Sequence[Line]) -> list[dict[str, Any]]:
    """Plot keyword arguments per line: colours for models, grey dashes for baselines."""
    colours, greys, dashes = cycle(MODEL_COLOURS), cycle(BASELINE_GREYS), cycle(BASELINE_DASHES)
    styles = []
    for line in lines:
        note = line.note or ("baseline" if line.baseline else "")
        label = f"{line.label} ({note})" if note else line.label
        if line.baseline:
            styles.append({"color": next(greys), "dashes": next(dashes), "linewidth": 1.3,
                           "label": label, "zorder": 2.0})
        else:
            styles.append({"color": next(colours), "linestyle": "-", "label": label,
                           "linewidth": 3.2 if line.on_top else 1.8,
                           "zorder": 4.0 if line.on_top else 3.0})
    return styles


def _draw(ax: Axes, lines: Sequence[Line], *, marker: str = "") -> None:
    """Every line, the ``on_top`` ones last (their legend entries come last as well)."""
    pairs = sorted(zip(lines, _styles(lines), strict=True), key=lambda p: p[0].on_top)
    for line, style in pairs:
        ax.plot(line.x, line.y, marker=marker, markersize=3.5, **style)


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers ("0.6", "2", "1e+03" only when long)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:.3g}"


def y_scale(lines: Sequence[Line]) -> tuple[str, dict[str, float]]:
    """The y scale of a panel of loss curves and its keyword arguments: "log" when every
    value is positive, "symlog" (linear below the smallest positive value's decade) when some
    are 0, "linear" when none is positive or one is negative."""
    values = np.concatenate([np.asarray(ln.y, dtype=np.float64) for ln in lines]) \
        if lines else np.empty(0)
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    if len(positive) == 0 or (values < 0).any():
        return "linear", {}
    if (values == 0).any():
        return "symlog", {"linthresh": float(10.0 ** np.floor(np.log10(positive.min())))}
    return "log", {}


def _set_y_scale(ax: Axes, lines: Sequence[Line], ylabel: str) -> None:
    scale, kwargs = y_scale(lines)
    ax.set_yscale(scale, **kwargs)
    if scale == "log":  # plain numbers (0.6, not 6 x 10^-1), minor ticks labelled on short spans
        ax.yaxis.set_major_formatter(_PlainLog(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(2.0, 0.5)))
    if scale == "symlog":
        ax.set_ylim(bottom=0.0)
    suffix = {"log": " (log scale)", "symlog": " (log scale, linear near 0)"}.get(scale, "")
    ax.set_ylabel(ylabel + suffix)


def _legend(fig: Figure, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")


def _month_ticks(first: int, last: int) -> list[int]:
    """About five ticks; every 6 or 12 months once the window is long."""
    step = max(1, -(-(last - first + 1) // 5))
    if step > 3:
        step = -(-step // 6) * 6
    return list(range(first, last + 1, step))


def metric_figure(
    title: str,
    ylabel: str,
    by_step: Sequence[Line],
    by_month: Sequence[Line],
    *,
    steps: int = 36,
    months: tuple[int, int] | None = None,
    unscored: Sequence[int] = (),
) -> bytes:
    """Two panels: the metric per step (1..steps) and per target month, one curve per model,
    on log y axes (see ``y_scale``), as PNG bytes.

    ``months`` fixes the month axis (default: the months drawn); ``unscored`` months, which
    had no actuals, are shaded so a gap reads as "no data", not as a missing model.
    """
    with _figure(11.0, 3.8) as fig:
        draw_metric(fig, title, ylabel, by_step, by_month, steps=steps, months=months,
                    unscored=unscored)
        return _png(fig)


def draw_metric(
    fig: Figure,
    title: str,
    ylabel: str,
    by_step: Sequence[Line],
    by_month: Sequence[Line],
    *,
    steps: int = 36,
    months: tuple[int, int] | None = None,
    unscored: Sequence[int] = (),
) -> tuple[Axes, Axes]:
    """Draw ``metric_figure``'s two panels into ``fig``; returns them (by step, by month)."""
    left, right = fig.subplots(1, 2)
    _draw(left, by_step)
    left.set_xlabel("step (months ahead)")
    left.set_title(f"{title} by step")
    left.set_xlim(0.5, steps + 0.5)
    _draw(right, by_month)
    right.set_xlabel("target month")
    right.set_title(f"{title} by target month")
    drawn = [float(v) for ln in by_month for v in ln.x]
    if months is None and drawn:
        months = (int(min(drawn)), int(max(drawn)))
    if months is not None:
        right.set_xlim(months[0] - 0.5, months[1] + 0.5)
        ticks = _month_ticks(*months)
        right.set_xticks(ticks, [f"{month_label(m)}\n{m}" for m in ticks])
    if len(unscored):
        right.axvspan(min(unscored) - 0.5, max(unscored) + 0.5, color="#eeeeee",
                      zorder=0, label="no actuals (not scored)")
    _set_y_scale(left, by_step, ylabel)
    _set_y_scale(right, by_month, ylabel)
    _legend(fig, right if len(unscored) else left)
    return left, right


def calibration_figure(title: str, lines: Sequence[Line]) -> bytes:
    """Mean observed over mean predicted per bin of predicted value, log axes, y = x drawn."""
    with _figure(6.8, 5.0) as fig:
        ax = fig.subplots()
        values = [v for ln in lines for v in (*ln.x, *ln.y) if np.isfinite(v)]
        top = max(max(values, default=1.0), 1.0) * 1.5
        ax.plot([0, top], [0, top], color="#bbbbbb", linewidth=1.0, label="perfect calibration")
        _draw(ax, lines, marker="o")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("mean predicted count in bin (log scale, linear below 1)")
        ax.set_ylabel("mean observed count in bin")
        ax.set_title(title)
        _legend(fig, ax)
        return _png(fig)


def error_map_figure(
    title: str, gid: npt.ArrayLike, values: npt.ArrayLike, *, vmax: float | None = None,
    label: str = "MSLE per cell",
) -> bytes:
    """A value per PRIO-GRID cell on the 0.5-degree lattice, axes in degrees lon/lat.

    Cells outside the given set are left blank (light grey); the grid spans the cells' bounding
    box plus one cell of margin.
    """
    row, col = rowcol_from_gid(np.asarray(gid, dtype=np.int64))
    vals = np.asarray(values, dtype=np.float64)
    r0, r1 = int(row.min()) - 1, int(row.max()) + 1
    c0, c1 = int(col.min()) - 1, int(col.max()) + 1
    grid = np.full((r1 - r0 + 1, c1 - c0 + 1), np.nan)
    grid[row - r0, col - c0] = vals
    lat_edges = (np.arange(r0, r1 + 2) - 1) * CELL_DEGREES - 90.0
    lon_edges = (np.arange(c0, c1 + 2) - 1) * CELL_DEGREES - 180.0
    aspect = (r1 - r0 + 1) / (c1 - c0 + 1)
    width = 7.5
    height = float(np.clip(width * aspect * 0.85 + 0.8, 3.0, 9.0))
    with _figure(width, height) as fig:
        ax = fig.subplots()
        ax.set_facecolor("#eeeeee")
        ax.grid(False)
        cmap = mpl.colormaps["magma_r"]
        top = vmax if vmax and vmax > 0 else max(float(np.nanmax(vals)), 1e-9)
        norm = mpl.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=top)  # a few hot cells
        mesh = ax.pcolormesh(lon_edges, lat_edges, np.ma.masked_invalid(grid), cmap=cmap,
                             norm=norm, shading="flat")  # must not wash out the rest
        ax.set_aspect("equal")
        ax.set_xlabel("longitude (degrees)")
        ax.set_ylabel("latitude (degrees)")
        ax.set_title(title)
        fig.colorbar(mesh, ax=ax, label=f"{label} (square-root colour scale)", shrink=0.85)
        return _png(fig)
