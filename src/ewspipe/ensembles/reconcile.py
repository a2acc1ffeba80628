"""Reconcile a PRIO-GRID-month forecast with a country-month forecast (DOMAIN.md section 4).

For every country and forecast month, the country's cells are rescaled so that they sum to the
country-level forecast (VIEWS ADR 027)::

    cell' = cell * cm / sum(cells)   when sum(cells) > 0, else the cells stay 0

Negative values (cells and countries) are set to 0 first. Points are reconciled with the
country point; sample forecasts draw by draw (draw j of the cells with draw j of the country,
or with the country point when the country forecast has no samples). Other draw counts are
refused, naming both forecasts and both counts: pairing draws of different ensembles by
position only means something when both have S draws. Everything is vectorised: cells are
summed per (country, origin, step) code and draw with ``np.bincount``.

**Streaming.** A :class:`Reconciler` holds the (small) country forecast and takes the grid
forecast chunk by chunk, each chunk whole months (e.g. :func:`month_chunks`, or a model's
output month by month), so memory is bounded by one chunk's draws: a global month at S =
1,000 is 66,205 x 1,000 x 8 bytes ~ 0.5 GB. Per-draw sums are added in blocks that start at
every month, so any chunking gives the in-memory :func:`reconcile` result bit for bit, with
the same table, alerts and summary (:meth:`Reconciler.report`).

**Which country owns a cell.** An :class:`Ownership` maps cells to countries, either statically
(one country per cell, e.g. ``priogrid_country/priogrid.parquet``) or per month (a
``month_id`` column, e.g. the ``country_id`` column a pgm panel carries). A forecast row takes
the owner of its cell **in the forecast origin month**: the cm forecast from an origin covers the
countries present at that origin, so this keeps both sides on the same borders when countries
split or merge (Sudan 2011: cells of today's South Sudan belong to Sudan for origins before
July 2011). Cells with country ``-1``, or absent from a static mapping, have no country: they
are left as they are and counted (absent cells also raise a warning).

**Alerts** (source ``reconciliation``, one per country-month): the factor ``cm / sum`` is above
``max_factor`` or below ``min_factor`` (defaults 10 and 0.1: the two models disagree by an
order of magnitude), or the cells sum to 0 while the country forecast is positive (the
country's deaths cannot be placed; the cells stay 0).

**Coverage** is checked, never repaired: the two forecasts must cover the same (origin, step)
months; every cell's country must have a country forecast for that month; and every country
forecast row must have cells (``outside="exclude"`` drops, and counts, countries that own no
cell in the grid forecast instead, e.g. when the grid covers Africa and the Middle East only).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.alerts import Alert, Severity
from ewspipe.arrays import Floats, Ints, Mask
from ewspipe.ensembles.postprocess import Negatives, check_finite, clip_negative, clip_negatives
from ewspipe.errors import InputError
from ewspipe.models.forecast import Forecast
from ewspipe.panel.columns import integers
from ewspipe.panel.priogrid import N_CELLS
from ewspipe.panel.sources.table import read_table

__all__ = [
    "CHUNK_VALUES",
    "DEFAULT_MAX_FACTOR",
    "DEFAULT_MIN_FACTOR",
    "NO_COUNTRY",
    "SOURCE",
    "UNMAPPED",
    "Ownership",
    "Reconciler",
    "Reconciliation",
    "ReconciliationReport",
    "month_chunks",
    "read_ownership",
    "reconcile",
]

SOURCE = "reconciliation"
NO_COUNTRY = -1  # the cell belongs to no country (sea, disputed, no data)
UNMAPPED = -2  # the cell (or cell-month) is absent from the mapping
DEFAULT_MAX_FACTOR = 10.0
DEFAULT_MIN_FACTOR = 0.1
CELL_COLUMNS = ("priogrid_gid", "priogrid_id")
_GID_SPAN = 1 << 18  # > 259,200 cells: month * span + gid is a unique cell-month key
_BLOCK = 8192  # rows per block for sample sums: codes and draws stay in the CPU cache
_BLOCK_VALUES = _BLOCK * 100  # ... and at most this many cell-draws (fewer rows at S = 1,000)
CHUNK_VALUES = 1 << 24  # cell-draws per chunk of month_chunks: 128 MiB of float64 draws
_STEP_SPAN = 1 << 20  # origin * span + step is a unique (origin, step) key
_SHORT = reprlib.Repr()
_SHORT.maxlist = 8


def _list(values: npt.ArrayLike) -> str:
    uniq = np.unique(np.asarray(values))
    return f"{_SHORT.repr(uniq.tolist())} ({len(uniq):,})"


# --- ownership -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Ownership:
    """Cell -> country, static or per month; build it with :meth:`from_frame` or
    :func:`read_ownership`.

    ``key`` is sorted: the cell id (static), or ``month_id * 2**18 + cell`` (per month).
    """

    key: Ints
    country: Ints
    per_month: bool
    source: str

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str) -> Ownership:
        """Validate a table with a cell column (``priogrid_gid`` or ``priogrid_id``),
        ``country_id`` (-1 = no country) and optionally ``month_id`` (per-month ownership).

        Raises:
            InputError: a column is missing, values are not integers, a cell id is outside
                1..259,200, a country id is below -1, or a cell (cell-month) appears twice.
        """
        cell = next((c for c in CELL_COLUMNS if c in frame.columns), None)
        if cell is None or "country_id" not in frame.columns:
            raise InputError(
                f"{source}: a cell -> country mapping needs columns priogrid_gid (or "
                f"priogrid_id) and country_id, optionally month_id; got "
                f"{', '.join(map(str, frame.columns)) or 'no columns'}"
            )
        per_month = "month_id" in frame.columns
        show = [c for c in ("month_id", cell, "country_id") if c in frame.columns]
        fix = "the mapping holds one integer country_id per cell (per month), -1 for no country"
        gid, _ = integers(frame, cell, source, fix=fix, show=show)
        country, _ = integers(frame, "country_id", source, fix=fix, show=show)
        bad = (gid < 1) | (gid > N_CELLS)
        if bad.any():
            raise InputError(f"{source}: column '{cell}': {int(bad.sum()):,} ids outside "
                             f"1..{N_CELLS:,}, e.g. {_list(gid[bad])}; use PRIO-GRID gids")
        bad = country < NO_COUNTRY
        if bad.any():
            raise InputError(f"{source}: column 'country_id': {int(bad.sum()):,} values below "
                             f"-1, e.g. {_list(country[bad])}; use -1 for a cell with no country")
        key = gid.copy()
        if per_month:
            month, _ = integers(frame, "month_id", source, fix=fix, show=show)
            key = month * _GID_SPAN + gid
        order = np.argsort(key, kind="stable")
        key, country = key[order], country[order]
        dup = np.flatnonzero(key[1:] == key[:-1])
        if len(dup):
            what = "(month_id, cell)" if per_month else "cell"
            raise InputError(
                f"{source}: {len(dup):,} {what} pairs appear more than once, e.g. cells "
                f"{_list(key[dup] % _GID_SPAN)}; each {what} needs exactly one country_id"
            )
        return cls(key=key, country=country, per_month=per_month, source=source)

    def countries(self, gid: npt.ArrayLike, month: npt.ArrayLike) -> Ints:
        """The owner of each cell in each month (ignored when static); UNMAPPED when absent."""
        gid = np.asarray(gid, dtype=np.int64)
        key = np.asarray(month, dtype=np.int64) * _GID_SPAN + gid if self.per_month else gid
        if len(self.key) == 0:
            return np.full(len(key), UNMAPPED, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return np.where(self.key[pos] == key, self.country[pos], UNMAPPED)


def read_ownership(path: Path | str) -> Ownership:
    """Read a mapping file (Parquet or CSV, see :meth:`Ownership.from_frame`)."""
    try:
        frame = read_table(path)
    except InputError as exc:
        raise InputError(f"reconciliation mapping file: {exc}") from exc
    return Ownership.from_frame(frame, source=str(path))


# --- reconciliation --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReconciliationReport:
    """What a streamed reconciliation reports besides the chunks (see :class:`Reconciliation`
    for the fields)."""

    alerts: tuple[Alert, ...]
    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Reconciliation:
    """The reconciled grid forecast, its alerts, one row per country-month and the counts.

    ``table`` has columns origin, step, month_id, country_id, cells, country_forecast,
    grid_sum (before), factor (NaN when grid_sum is 0) and reconciled_sum (point values).
    """

    forecast: Forecast
    alerts: tuple[Alert, ...]
    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _origin_step_code(frame: pd.DataFrame, lo: int, max_step: int) -> Ints:
    origin = frame["origin"].to_numpy(dtype=np.int64)
    step = frame["step"].to_numpy(dtype=np.int64)
    return (origin - lo) * max_step + (step - 1)


def _check_months(grid: Forecast, country: Forecast) -> tuple[int, int, int]:
    frames = (grid.frame, country.frame)
    if min(len(f) for f in frames) == 0:
        raise InputError("reconciliation needs rows in both the grid and the country forecast")
    lo = min(int(f["origin"].min()) for f in frames)
    hi = max(int(f["origin"].max()) for f in frames)
    max_step = max(int(f["step"].max()) for f in frames)
    a, b = (np.unique(_origin_step_code(f, lo, max_step)) for f in frames)
    if not np.array_equal(a, b):
        def months(codes: Ints) -> str:
            origin, step = codes // max_step + lo, codes % max_step + 1
            return (f"months {_list(origin + step)} from origins {_list(origin)}"
                    if len(codes) else "none")
        raise InputError(
            "the grid and the country forecast cover different months: only in the grid "
            f"forecast: {months(np.setdiff1d(a, b))}; only in the country forecast: "
            f"{months(np.setdiff1d(b, a))}. Both must come from the same run type and origins "
            "(and, for a forecast, the same last observed month)"
        )
    return lo, hi, max_step


def _factor_alerts(
    t: pd.DataFrame, mask: npt.NDArray[np.bool_], *, label: str, max_factor: float,
    min_factor: float,
) -> list[Alert]:
    out = []
    for r in t.loc[mask].itertuples(index=False):
        high = r.factor > max_factor
        out.append(Alert(
            source=SOURCE,
            severity=Severity.WARNING,
            message=(
                f"{label}: country {r.country_id}, month {r.month_id} (origin {r.origin}): the "
                f"{r.cells} cells sum to {r.grid_sum:.4g} and were rescaled by {r.factor:.3g} to "
                f"the country forecast {r.country_forecast:.4g}; a factor "
                f"{'above' if high else 'below'} {max_factor if high else min_factor:g} means the "
                "grid and country models disagree by an order of magnitude"
            ),
            offender=f"country {r.country_id}, month {r.month_id}",
            value=float(r.factor),
            threshold=max_factor if high else min_factor,
            details={"kind": "factor", "country_id": int(r.country_id),
                     "month_id": int(r.month_id), "origin": int(r.origin), "step": int(r.step),
                     "cells": int(r.cells), "grid_sum": float(r.grid_sum),
                     "country_forecast": float(r.country_forecast), "factor": float(r.factor)},
        ))
    return out


def _zero_sum_alerts(t: pd.DataFrame, mask: npt.NDArray[np.bool_], *, label: str) -> list[Alert]:
    return [
        Alert(
            source=SOURCE,
            severity=Severity.WARNING,
            message=(
                f"{label}: country {r.country_id}, month {r.month_id} (origin {r.origin}): the "
                f"{r.cells} cells sum to 0 but the country forecast is {r.country_forecast:.4g}; "
                "the cells stay 0, so these deaths are not placed on the grid"
            ),
            offender=f"country {r.country_id}, month {r.month_id}",
            value=float(r.country_forecast),
            threshold=0.0,
            details={"kind": "zero_grid_sum", "country_id": int(r.country_id),
                     "month_id": int(r.month_id), "origin": int(r.origin), "step": int(r.step),
                     "cells": int(r.cells), "country_forecast": float(r.country_forecast)},
        )
        for r in t.loc[mask].itertuples(index=False)
    ]

def _block_starts(os_code: Ints, rows_per_block: int) -> Ints:
    """Row offsets of the sample-sum blocks: every month starts a block, then one every
    ``rows_per_block`` rows. Blocks never depend on where a chunk starts, so the per-draw sums
    (added block by block) are bit-identical for any chunking into whole months."""
    n = len(os_code)
    month_start = np.flatnonzero(np.r_[True, os_code[1:] != os_code[:-1]])
    month_end = np.r_[month_start[1:], n]
    return np.concatenate([np.arange(a, b, rows_per_block)
                           for a, b in zip(month_start.tolist(), month_end.tolist(), strict=True)])


def _sample_factors(
    samples: Floats, local: Ints, mapped: Mask, target: Floats, starts: Ints,
) -> tuple[Floats, Floats]:
    """Per-draw sums of the cells and factors, both (keys x S); factor 0 where the sum is 0.

    ``local`` is each row's key in ``target``'s rows; sums use ``np.bincount`` over row blocks
    (codes key * S + draw), so no (rows x S) temporary is allocated.
    """
    n_keys, s = target.shape
    sums = np.zeros(n_keys * s, dtype=np.float64)
    offsets = np.arange(s, dtype=np.int64)
    ends = np.r_[starts[1:], len(local)]
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        ok = mapped[lo:hi]
        block, p = samples[lo:hi], local[lo:hi]
        if not ok.all():
            block, p = block[ok], p[ok]
        codes = (p[:, None] * s + offsets).ravel()
        sums += np.bincount(codes, weights=block.ravel(), minlength=n_keys * s)
    sums = sums.reshape(n_keys, s)
    factor = np.divide(target, sums, out=np.zeros_like(sums), where=sums > 0)
    return sums, factor


def _scale_samples(samples: Floats, local: Ints, mapped: Mask, factor: Floats, out: Floats,
                   rows_per_block: int) -> Floats:
    """``out`` = samples scaled by the factor of their key and draw (unmapped rows copied);
    ``out`` may be ``samples`` itself."""
    for lo in range(0, len(local), rows_per_block):
        hi = min(lo + rows_per_block, len(local))
        ok = mapped[lo:hi]
        if ok.all():
            np.multiply(samples[lo:hi], factor[local[lo:hi]], out=out[lo:hi])
        else:
            if out is not samples:
                out[lo:hi] = samples[lo:hi]
            rows = np.flatnonzero(ok) + lo
            out[rows] = samples[rows] * factor[local[rows]]
    return out


def _check_units(grid: Forecast, country: Forecast) -> None:
    if grid.unit_column != "priogrid_gid" or country.unit_column != "country_id":
        raise InputError(
            f"reconcile needs a pgm grid forecast (priogrid_gid) and a cm country forecast "
            f"(country_id); got {grid.unit_column} and {country.unit_column}"
        )


def _check_draws(s_grid: int, s_country: int, grid_model: str, country_model: str) -> None:
    if s_grid > 1 and s_country not in (1, s_grid):
        raise InputError(
            f"{grid_model} has {s_grid} samples per row and {country_model} {s_country}; "
            "per-draw reconciliation pairs draw j with draw j, so the counts must be equal "
            "(or the country forecast a point forecast): give both the same number of draws"
        )


def _months_text(codes: Ints, lo: int, max_step: int) -> str:
    origin, step = codes // max_step + lo, codes % max_step + 1
    return f"months {_list(origin + step)} from origins {_list(origin)}" if len(codes) else "none"


class Reconciler:
    """Reconcile a grid forecast with one country forecast, chunk by chunk.

    A chunk is a :class:`Forecast` of whole forecast months: every row of each (origin, step)
    it holds, sorted (origin, step, unit). Feed the chunks through :meth:`run` (or
    :meth:`chunk`), then call :meth:`report` for the alerts, the country-month table and the
    summary. Memory is one chunk's draws (in and out) plus the small country forecast: a
    global month at S = 1,000 is 66,205 x 1,000 x 8 bytes ~ 0.5 GB.

    The reconciled values and the report are the same, bit for bit, for any chunking into
    whole months (:func:`reconcile` is one chunk). Refusals name the chunk's rows: the first
    chunk with a NaN, a cell without country forecast, a country-month without cells
    (``outside="error"``) or a month the country forecast lacks fails at once; months of the
    country forecast no chunk brought fail in :meth:`report`.
    """

    def __init__(
        self,
        country: Forecast,
        ownership: Ownership,
        *,
        max_factor: float = DEFAULT_MAX_FACTOR,
        min_factor: float = DEFAULT_MIN_FACTOR,
        min_deaths: float = 0.0,
        outside: Literal["error", "exclude"] = "error",
        grid_model: str = "grid forecast",
        country_model: str = "country forecast",
    ) -> None:
        if country.unit_column != "country_id":
            raise InputError(f"reconcile needs a cm country forecast (country_id); got "
                             f"{country.unit_column}")
        if not (0 <= min_factor < 1 < max_factor):
            raise InputError(f"factor bounds must satisfy 0 <= min_factor < 1 < max_factor; "
                             f"got min_factor={min_factor}, max_factor={max_factor}")
        if outside not in ("error", "exclude"):
            raise InputError(f"outside must be 'error' or 'exclude', got {outside!r}")
        if len(country) == 0:
            raise InputError("reconciliation needs rows in both the grid and the country "
                             "forecast")
        self.ownership, self.outside = ownership, outside
        self.max_factor, self.min_factor, self.min_deaths = max_factor, min_factor, min_deaths
        self.grid_model, self.country_model = grid_model, country_model
        self.label = f"reconciliation of {grid_model} with {country_model}"
        check_finite(country, model=country_model)
        country, self._country_neg = clip_negative(country, model=country_model)
        self._s_country = country.n_samples

        # --- country rows: one key per (country, origin, step), sorted
        c_frame = country.frame
        self._lo = int(c_frame["origin"].min())
        self._hi = int(c_frame["origin"].max())
        self._max_step = int(c_frame["step"].max())
        self._n_os = (self._hi - self._lo + 1) * self._max_step
        c_code = (c_frame["country_id"].to_numpy(dtype=np.int64) * self._n_os
                  + _origin_step_code(c_frame, self._lo, self._max_step))
        c_order = np.argsort(c_code, kind="stable")
        c_sorted = c_code[c_order]
        dup = np.flatnonzero(c_sorted[1:] == c_sorted[:-1])
        if len(dup):
            raise InputError(f"{country_model} has {len(dup):,} duplicated (origin, step, "
                             f"country_id) rows, e.g. countries "
                             f"{_list(c_sorted[dup] // self._n_os)}")
        self._c_sorted = c_sorted
        self._c_os = c_sorted % self._n_os
        self._c_point = country.point[c_order]
        self._c_samples = country.samples[c_order] if self._s_country > 1 else None
        n_keys = len(c_sorted)
        # --- accumulated over chunks (small: one value per country-month)
        self._seen = np.zeros(self._n_os, dtype=bool)
        self._cells = np.zeros(n_keys, dtype=np.int64)
        self._sums = np.zeros(n_keys, dtype=np.float64)
        self._s_grid: int | None = None
        self._grid_neg: Negatives | None = None
        self._cell_months = 0
        self._no_country = 0
        self._unmapped = 0
        self._unmapped_cells = np.zeros(0, dtype=np.int64)
        self._lost_draws = 0
        self._report: ReconciliationReport | None = None

    def run(self, chunks: Iterable[Forecast]) -> Iterator[Forecast]:
        """The reconciled chunks, one per input chunk, in order."""
        for part in chunks:
            yield self.chunk(part)

    def chunk(self, grid: Forecast, *, _finite: bool = False) -> Forecast:
        """One reconciled chunk (same rows and order as ``grid``).

        Raises:
            InputError: see :func:`reconcile`; also a month already seen in an earlier chunk
                (chunks must hold whole months) or a sample count unlike earlier chunks'.
            CheckFailed: NaN or infinite values in the chunk.
        """
        if self._report is not None:
            raise InputError(f"{self.label}: a chunk came after the report was made")
        if grid.unit_column != "priogrid_gid":
            raise InputError(f"reconcile needs a pgm grid forecast (priogrid_gid) and a cm "
                             f"country forecast (country_id); got {grid.unit_column} and "
                             "country_id")
        s_grid = grid.n_samples
        if self._s_grid is not None and s_grid != self._s_grid:
            raise InputError(f"{self.grid_model}: a chunk has {s_grid} samples per row, earlier "
                             f"chunks {self._s_grid}; every chunk of a forecast has the same "
                             "draws")
        _check_draws(s_grid, self._s_country, self.grid_model, self.country_model)
        self._s_grid = s_grid
        if len(grid) == 0:
            return grid
        if not _finite:
            check_finite(grid, model=self.grid_model)
        grid, negatives = clip_negatives(grid)
        if negatives is not None:
            self._grid_neg = negatives if self._grid_neg is None else self._grid_neg.merge(
                negatives)
        g_frame = grid.frame
        lo, max_step = self._lo, self._max_step

        # --- months: known to the country forecast, not seen in an earlier chunk
        g_origin = g_frame["origin"].to_numpy(dtype=np.int64)
        g_step = g_frame["step"].to_numpy(dtype=np.int64)
        outside_range = (g_origin < lo) | (g_origin > self._hi) | (g_step < 1) | (
            g_step > max_step)
        g_os = (g_origin - lo) * max_step + (g_step - 1)
        months = np.unique(g_os[~outside_range])
        unknown = months[~np.isin(months, self._c_os)]
        if outside_range.any() or len(unknown):
            u_origin = np.r_[g_origin[outside_range], unknown // max_step + lo]
            u_month = np.r_[g_origin[outside_range] + g_step[outside_range],
                            unknown // max_step + lo + unknown % max_step + 1]
            shown = f"months {_list(u_month)} from origins {_list(u_origin)}"
            raise InputError(
                f"the grid and the country forecast cover different months: only in the grid "
                f"forecast: {shown}. Both must come from the same run type and origins (and, "
                "for a forecast, the same last observed month)"
            )
        again = months[self._seen[months]]
        if len(again):
            raise InputError(
                f"{self.label}: a chunk repeats {_months_text(again, lo, max_step)} of an "
                "earlier chunk; a chunk must hold every row of its months (whole months, "
                "sorted by origin, step and cell)"
            )
        self._seen[months] = True

        # --- cells: owner at the origin, key position in the country rows
        g_gid = g_frame["priogrid_gid"].to_numpy(dtype=np.int64)
        owner = self.ownership.countries(g_gid, g_origin)
        mapped = owner >= 0
        c_sorted = self._c_sorted
        g_code = owner * self._n_os + g_os
        pos = np.minimum(np.searchsorted(c_sorted, g_code), len(c_sorted) - 1)
        orphan = mapped & (c_sorted[pos] != g_code)
        if orphan.any():
            raise InputError(
                f"{self.label}: {int(orphan.sum()):,} cell-months belong to countries without "
                f"a country forecast for that month: countries {_list(owner[orphan])} (per "
                f"{self.ownership.source}, owner in the origin month), months "
                f"{_list(g_frame['month_id'].to_numpy()[orphan])}, e.g. cells "
                f"{_list(g_gid[orphan])}. The country forecast must cover every country owning "
                "cells at the origin; check the mapping (a static mapping labels historical "
                "cells with today's countries) or the country forecast's entity set"
            )
        pos = np.where(mapped, pos, -1)
        n_keys = len(c_sorted)
        cells = np.bincount(pos[mapped], minlength=n_keys)
        keys = np.flatnonzero(np.isin(self._c_os, months))  # this chunk's country-months
        empty = cells[keys] == 0
        if empty.any() and self.outside == "error":
            e_code = c_sorted[keys[empty]]
            e_os = e_code % self._n_os
            raise InputError(
                f"{self.label}: {int(empty.sum()):,} country-months of the country forecast "
                f"have no cell in the grid forecast: countries {_list(e_code // self._n_os)}, "
                f"months {_list(e_os // max_step + lo + e_os % max_step + 1)}. Every forecast "
                "country needs cells (check the mapping and the grid's coverage), or pass "
                "outside='exclude' to reconcile only the countries the grid covers"
            )
        self._cells += cells
        self._cell_months += int(mapped.sum())
        unmapped = owner == UNMAPPED
        self._no_country += int((~mapped).sum())
        if unmapped.any():
            self._unmapped += int(unmapped.sum())
            self._unmapped_cells = np.union1d(self._unmapped_cells, g_gid[unmapped])

        # --- points
        g_point = grid.point
        sums = np.bincount(pos[mapped], weights=g_point[mapped], minlength=n_keys)
        self._sums[keys] = sums[keys]
        positive = sums > 0
        scale = np.divide(self._c_point, sums, out=np.zeros(n_keys), where=positive)
        new_point = g_point.copy()
        new_point[mapped] *= scale[pos[mapped]]

        # --- samples, draw by draw, over this chunk's country-months only
        if s_grid > 1:
            local = np.where(mapped, np.searchsorted(keys, pos), 0)
            target = (self._c_samples[keys] if self._c_samples is not None
                      else np.broadcast_to(self._c_point[keys, None], (len(keys), s_grid)))
            rows_per_block = max(1, min(_BLOCK, _BLOCK_VALUES // s_grid))
            samples = np.asarray(grid.samples, dtype=np.float64)
            d_sums, f_draw = _sample_factors(samples, local, mapped, target,
                                             _block_starts(g_os, rows_per_block))
            self._lost_draws += int(np.count_nonzero((d_sums[~empty] == 0)
                                                     & (target[~empty] > 0)))
            # clip_negatives already made a fresh array when it changed something: in place
            out = samples if negatives is not None else np.empty_like(samples)
            new_samples = _scale_samples(samples, local, mapped, f_draw, out, rows_per_block)
        else:
            new_samples = new_point[:, None]
        return Forecast(frame=g_frame, point=new_point,
                        samples=np.ascontiguousarray(new_samples), unit_column=grid.unit_column)

    def report(self) -> ReconciliationReport:
        """Alerts, table and summary once every chunk went through. Made once; later calls
        return the same.

        Raises:
            InputError: no chunk had rows, or months of the country forecast came in no chunk.
        """
        if self._report is not None:
            return self._report
        lo, max_step, n_os = self._lo, self._max_step, self._n_os
        if self._s_grid is None or not self._seen.any():
            raise InputError("reconciliation needs rows in both the grid and the country "
                             "forecast")
        missing = np.unique(self._c_os[~self._seen[self._c_os]])
        if len(missing):
            raise InputError(
                "the grid and the country forecast cover different months: only in the grid "
                "forecast: none; only in the country forecast: "
                f"{_months_text(missing, lo, max_step)}. Both must come from the same run type "
                "and origins (and, for a forecast, the same last observed month)"
            )
        c_sorted, c_point, sums = self._c_sorted, self._c_point, self._sums
        empty = self._cells == 0
        outside_summary = {"countries": 0, "country_months": 0, "forecast_total": 0.0}
        if empty.any():
            outside_summary = {
                "countries": len(np.unique(c_sorted[empty] // n_os)),
                "country_months": int(empty.sum()),
                "forecast_total": float(c_point[empty].sum()),
            }
        positive = sums > 0
        factor = np.divide(c_point, sums, out=np.full(len(sums), np.nan), where=positive)
        used = ~empty
        origin_c = self._c_os // max_step + lo
        step_c = self._c_os % max_step + 1
        table = pd.DataFrame({
            "origin": origin_c,
            "step": step_c,
            "month_id": origin_c + step_c,
            "country_id": c_sorted // n_os,
            "cells": self._cells,
            "country_forecast": c_point,
            "grid_sum": sums,
            "factor": factor,
            "reconciled_sum": np.where(positive, c_point, 0.0),
        })[used].sort_values(["origin", "step", "country_id"], kind="stable").reset_index(
            drop=True)
        pos_t = table["grid_sum"].to_numpy() > 0
        f_t = table["factor"].to_numpy()
        big = np.maximum(table["grid_sum"].to_numpy(), table["country_forecast"].to_numpy())
        beyond = (pos_t & ((f_t > self.max_factor) | (f_t < self.min_factor))
                  & (big >= self.min_deaths))
        zero_sum = ~pos_t & (table["country_forecast"].to_numpy() > 0)

        label = self.label
        alerts: list[Alert] = []
        if self._grid_neg is not None:
            alerts.append(self._grid_neg.alert(model=self.grid_model))
        if self._country_neg is not None:
            alerts.append(self._country_neg)
        alerts += _factor_alerts(table, beyond, label=label, max_factor=self.max_factor,
                                 min_factor=self.min_factor)
        alerts += _zero_sum_alerts(table, zero_sum, label=label)
        source = self.ownership.source
        if self._unmapped:
            alerts.append(Alert(
                source=SOURCE, severity=Severity.WARNING,
                message=(f"{label}: {self._unmapped:,} cell-months are not in the mapping "
                         f"{source} (cells {_list(self._unmapped_cells)}); they have no "
                         "country and were left unreconciled. Add them to the mapping, with "
                         "country_id -1 if they belong to no country"),
                offender=source, value=float(self._unmapped),
                details={"kind": "unmapped", "cells": self._unmapped_cells.tolist()[:100]},
            ))
        lost = self._lost_draws
        if lost > 0:
            alerts.append(Alert(
                source=SOURCE, severity=Severity.WARNING,
                message=(f"{label}: in {lost:,} (country-month, draw) pairs the cells' draw "
                         "sums to 0 while the country's draw is positive; those cell draws "
                         "stay 0"),
                offender=self.grid_model, value=float(lost),
                details={"kind": "zero_grid_sum_draws", "draws": lost},
            ))
        finite = f_t[pos_t]
        summary: dict[str, Any] = {
            "grid_model": self.grid_model,
            "country_model": self.country_model,
            "ownership": source,
            "ownership_per_month": self.ownership.per_month,
            "country_months": int(used.sum()),
            "countries": int(table["country_id"].nunique()),
            "cell_months": self._cell_months,
            "cell_months_without_country": self._no_country,
            "cell_months_unmapped": self._unmapped,
            "factor_alerts": int(beyond.sum()),
            "zero_sum_alerts": int(zero_sum.sum()),
            "zero_sum_draws": lost,
            "factor_min": float(finite.min()) if len(finite) else None,
            "factor_median": float(np.median(finite)) if len(finite) else None,
            "factor_max": float(finite.max()) if len(finite) else None,
            "max_factor": self.max_factor,
            "min_factor": self.min_factor,
            "countries_outside_grid": outside_summary,
            "samples": "per draw" if self._s_grid > 1 else "point only",
        }
        self._report = ReconciliationReport(alerts=tuple(alerts), table=table,
                                            summary=summary)
        return self._report


def month_chunks(forecast: Forecast, *, max_values: int = CHUNK_VALUES) -> Iterator[Forecast]:
    """``forecast`` cut into chunks of whole months (views, no copy): consecutive (origin,
    step) groups of at most ``max_values`` cell-draws each (at least one month per chunk)."""
    frame = forecast.frame
    os_code = (frame["origin"].to_numpy(dtype=np.int64) * _STEP_SPAN
               + frame["step"].to_numpy(dtype=np.int64))
    starts = np.flatnonzero(np.r_[True, os_code[1:] != os_code[:-1]]).tolist()
    bounds = [*starts, len(frame)]
    per_row = max(1, forecast.n_samples)
    lo = 0
    for i in range(1, len(bounds)):
        last = i == len(bounds) - 1
        if last or (bounds[i + 1] - bounds[lo]) * per_row > max_values:
            a, b = bounds[lo], bounds[i]
            yield Forecast(frame=frame.iloc[a:b], point=forecast.point[a:b],
                           samples=forecast.samples[a:b], unit_column=forecast.unit_column)
            lo = i


def reconcile(
    grid: Forecast,
    country: Forecast,
    ownership: Ownership,
    *,
    max_factor: float = DEFAULT_MAX_FACTOR,
    min_factor: float = DEFAULT_MIN_FACTOR,
    min_deaths: float = 0.0,
    outside: Literal["error", "exclude"] = "error",
    grid_model: str = "grid forecast",
    country_model: str = "country forecast",
) -> Reconciliation:
    """Rescale ``grid`` so each country's cells sum to ``country`` in every forecast month
    (in memory: one :class:`Reconciler` chunk).

    Args:
        grid: pgm forecast (unit ``priogrid_gid``), raw counts, point and optional samples.
        country: cm forecast (unit ``country_id``) of the same origins and steps.
        ownership: cell -> country; a row uses its cell's owner in the row's origin month.
        max_factor, min_factor: alert when ``cm / sum(cells)`` is outside these bounds
            (defaults 10 and 0.1).
        min_deaths: factor alerts only where the country forecast or the grid sum is at least
            this many deaths (default 0: every country-month); a factor of 20 between 0.01 and
            0.2 predicted deaths says nothing about the models.
        outside: what to do with country forecast rows whose country owns no cell of the grid
            forecast at that origin: "error" (default) or "exclude" (dropped, and counted in
            the summary).
        grid_model, country_model: names used in messages and alerts.

    Returns:
        A :class:`Reconciliation`: the reconciled forecast (same rows and order as ``grid``),
        alerts (source "reconciliation"; negatives set to 0 come from "non_negativity"), a
        table per country-month and a summary of counts.

    Raises:
        InputError: wrong unit columns, bad bounds, the two forecasts cover different months,
            cells whose country has no country forecast, country rows without cells (unless
            ``outside="exclude"``), different sample counts (other than 1), or duplicated rows.
        CheckFailed: NaN or infinite values in either forecast.
    """
    _check_units(grid, country)
    if not (0 <= min_factor < 1 < max_factor):
        raise InputError(f"factor bounds must satisfy 0 <= min_factor < 1 < max_factor; got "
                         f"min_factor={min_factor}, max_factor={max_factor}")
    if outside not in ("error", "exclude"):
        raise InputError(f"outside must be 'error' or 'exclude', got {outside!r}")
    _check_draws(grid.n_samples, country.n_samples, grid_model, country_model)
    check_finite(grid, model=grid_model)
    rec = Reconciler(country, ownership, max_factor=max_factor, min_factor=min_factor,
                     min_deaths=min_deaths, outside=outside, grid_model=grid_model,
                     country_model=country_model)
    _check_months(grid, country)
    out = rec.chunk(grid, _finite=True)
    report = rec.report()
    return Reconciliation(forecast=out, alerts=report.alerts, table=report.table,
                          summary=report.summary)
