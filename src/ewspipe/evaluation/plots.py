"""The report's figures as PNG bytes: metric curves, calibration, PRIO-GRID error maps.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global
backend or figure state) under one fixed style, and saved without the "Software" PNG text
chunk, so the same data always gives the same bytes. Baselines are drawn dashed in greys, the
other models solid in colours, so a model that does not beat its yardsticks stands out.
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

from ewspipe.arrays import Floats
from ewspipe.panel.months import month_label
from ewspipe.panel.priogrid import CELL_DEGREES, rowcol_from_gid

__all__ = ["Line", "calibration_figure", "error_map_figure", "metric_figure"]

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
    """One model's curve: ``y`` over ``x``; ``baseline`` selects the dashed grey style."""

    label: str
    x: Floats
    y: Floats
    baseline: bool = False


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
        if line.baseline:
            styles.append({"color": next(greys), "dashes": next(dashes), "linewidth": 1.3,
                           "label": f"{line.label} (baseline)"})
        else:
            styles.append({"color": next(colours), "linestyle": "-", "linewidth": 1.8,
                           "label": line.label})
    return styles


def _draw(ax: Axes, lines: Sequence[Line], *, marker: str = "") -> None:
    for line, style in zip(lines, _styles(lines), strict=True):
        ax.plot(line.x, line.y, marker=marker, markersize=3.5, **style)


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
    """Two panels: the metric per step (1..steps) and per target month, one curve per model.

    ``months`` fixes the month axis (default: the months drawn); ``unscored`` months, which
    had no actuals, are shaded so a gap reads as "no data", not as a missing model.
    """
    with _figure(11.0, 3.8) as fig:
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
        for ax in (left, right):
            ax.set_ylabel(ylabel)
        _legend(fig, right if len(unscored) else left)
        return _png(fig)


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
