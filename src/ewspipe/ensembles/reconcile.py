"""Reconcile a PRIO-GRID-month forecast with a country-month forecast (DOMAIN.md section 4).

For every country and forecast month, the country's cells are rescaled so that they sum to the
country-level forecast (VIEWS ADR 027)::

    cell' = cell * cm / sum(cells)   when sum(cells) > 0, else the cells stay 0

Negative values (cells and countries) are set to 0 first. Points are reconciled with the
country point; sample forecasts draw by draw (draw j of the cells with draw j of the country,
or with the country point when the country forecast has no samples). Everything is vectorised:
cells are summed per (country, origin, step) code with ``np.bincount``.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.alerts import Alert, Severity
from ewspipe.arrays import Floats, Ints
from ewspipe.ensembles.postprocess import check_finite, clip_negative
from ewspipe.errors import InputError
from ewspipe.models.forecast import Forecast
from ewspipe.panel.columns import integers
from ewspipe.panel.priogrid import N_CELLS
from ewspipe.panel.sources.table import read_table

__all__ = [
    "DEFAULT_MAX_FACTOR",
    "DEFAULT_MIN_FACTOR",
    "NO_COUNTRY",
    "SOURCE",
    "UNMAPPED",
    "Ownership",
    "Reconciliation",
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

def _sample_factors(
    samples: Floats, pos: Ints, mapped: npt.NDArray[np.bool_], target: Floats, n_keys: int,
) -> tuple[Floats, Floats]:
    """Per-draw sums of the cells and factors, both (keys x S); factor 0 where the sum is 0."""
    s = samples.shape[1]
    sums = np.zeros(n_keys * s, dtype=np.float64)
    offsets = np.arange(s, dtype=np.int64)
    for lo in range(0, len(pos), _BLOCK):
        hi = min(lo + _BLOCK, len(pos))
        ok = mapped[lo:hi]
        block, p = samples[lo:hi], pos[lo:hi]
        if not ok.all():
            block, p = block[ok], p[ok]
        codes = (p[:, None] * s + offsets).ravel()
        sums += np.bincount(codes, weights=block.ravel(), minlength=n_keys * s)
    sums = sums.reshape(n_keys, s)
    factor = np.divide(target, sums, out=np.zeros_like(sums), where=sums > 0)
    return sums, factor


def _scale_samples(samples: Floats, pos: Ints, mapped: npt.NDArray[np.bool_],
                   factor: Floats, out: Floats) -> Floats:
    """``out`` = samples scaled by the factor of their key and draw (unmapped rows copied);
    ``out`` may be ``samples`` itself."""
    for lo in range(0, len(pos), _BLOCK):
        hi = min(lo + _BLOCK, len(pos))
        ok = mapped[lo:hi]
        if ok.all():
            np.multiply(samples[lo:hi], factor[pos[lo:hi]], out=out[lo:hi])
        else:
            if out is not samples:
                out[lo:hi] = samples[lo:hi]
            rows = np.flatnonzero(ok) + lo
            out[rows] = samples[rows] * factor[pos[rows]]
    return out


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
    """Rescale ``grid`` so each country's cells sum to ``country`` in every forecast month.

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
    if grid.unit_column != "priogrid_gid" or country.unit_column != "country_id":
        raise InputError(
            f"reconcile needs a pgm grid forecast (priogrid_gid) and a cm country forecast "
            f"(country_id); got {grid.unit_column} and {country.unit_column}"
        )
    if not (0 <= min_factor < 1 < max_factor):
        raise InputError(f"factor bounds must satisfy 0 <= min_factor < 1 < max_factor; got "
                         f"min_factor={min_factor}, max_factor={max_factor}")
    if outside not in ("error", "exclude"):
        raise InputError(f"outside must be 'error' or 'exclude', got {outside!r}")
    s_grid, s_country = grid.n_samples, country.n_samples
    if s_grid > 1 and s_country not in (1, s_grid):
        raise InputError(
            f"{grid_model} has {s_grid} samples per row and {country_model} {s_country}; "
            "per-draw reconciliation pairs draw j with draw j, so the counts must be equal "
            "(or the country forecast a point forecast)"
        )
    label = f"reconciliation of {grid_model} with {country_model}"
    check_finite(grid, model=grid_model)
    check_finite(country, model=country_model)
    alerts: list[Alert] = []
    grid, grid_neg = clip_negative(grid, model=grid_model)
    country, country_neg = clip_negative(country, model=country_model)
    alerts += [a for a in (grid_neg, country_neg) if a is not None]
    lo, hi, max_step = _check_months(grid, country)
    n_os = (hi - lo + 1) * max_step

    # --- country rows: one key per (country, origin, step)
    c_frame = country.frame
    c_id = c_frame["country_id"].to_numpy(dtype=np.int64)
    c_os = _origin_step_code(c_frame, lo, max_step)
    c_code = c_id * n_os + c_os
    c_order = np.argsort(c_code, kind="stable")
    c_sorted = c_code[c_order]
    dup = np.flatnonzero(c_sorted[1:] == c_sorted[:-1])
    if len(dup):
        raise InputError(f"{country_model} has {len(dup):,} duplicated (origin, step, "
                         f"country_id) rows, e.g. countries {_list(c_sorted[dup] // n_os)}")

    # --- cells: owner at the origin, key position in the country rows
    g_frame = grid.frame
    g_origin = g_frame["origin"].to_numpy(dtype=np.int64)
    g_gid = g_frame["priogrid_gid"].to_numpy(dtype=np.int64)
    owner = ownership.countries(g_gid, g_origin)
    mapped = owner >= 0
    g_code = owner * n_os + _origin_step_code(g_frame, lo, max_step)
    pos = np.minimum(np.searchsorted(c_sorted, g_code), len(c_sorted) - 1)
    found = c_sorted[pos] == g_code
    orphan = mapped & ~found
    if orphan.any():
        months = g_frame["month_id"].to_numpy()[orphan]
        raise InputError(
            f"{label}: {int(orphan.sum()):,} cell-months belong to countries without a country "
            f"forecast for that month: countries {_list(owner[orphan])} (per {ownership.source}, "
            f"owner in the origin month), months {_list(months)}, e.g. cells "
            f"{_list(g_gid[orphan])}. The country forecast must cover every country owning "
            "cells at the origin; check the mapping (a static mapping labels historical cells "
            "with today's countries) or the country forecast's entity set"
        )
    pos = np.where(mapped, pos, -1)
    n_keys = len(c_sorted)
    cells = np.bincount(pos[mapped], minlength=n_keys)

    # --- country rows without cells
    empty = cells == 0
    outside_summary = {"countries": 0, "country_months": 0, "forecast_total": 0.0}
    if empty.any():
        e_country = c_sorted[empty] // n_os
        e_os = c_sorted[empty] % n_os
        if outside == "error":
            raise InputError(
                f"{label}: {int(empty.sum()):,} country-months of the country forecast have no "
                f"cell in the grid forecast: countries {_list(e_country)}, months "
                f"{_list(e_os // max_step + lo + e_os % max_step + 1)}. Every forecast country "
                "needs cells (check the mapping and the grid's coverage), or pass "
                "outside='exclude' to reconcile only the countries the grid covers"
            )
        outside_summary = {
            "countries": len(np.unique(e_country)),
            "country_months": int(empty.sum()),
            "forecast_total": float(country.point[c_order][empty].sum()),
        }

    # --- points
    c_point = country.point[c_order]
    g_point = grid.point
    sums = np.bincount(pos[mapped], weights=g_point[mapped], minlength=n_keys)
    positive = sums > 0
    factor = np.divide(c_point, sums, out=np.full(n_keys, np.nan), where=positive)
    scale = np.where(positive, factor, 0.0)
    new_point = g_point.copy()
    new_point[mapped] *= scale[pos[mapped]]

    # --- samples, draw by draw
    lost_draws = 0
    if s_grid > 1:
        target = (country.samples[c_order] if s_country == s_grid
                  else np.broadcast_to(c_point[:, None], (n_keys, s_grid)))
        samples = np.asarray(grid.samples, dtype=np.float64)
        d_sums, f_draw = _sample_factors(samples, pos, mapped, target, n_keys)
        lost_draws = int(np.count_nonzero((d_sums[~empty] == 0) & (target[~empty] > 0)))
        # clip_negative already made a fresh array when it changed something: scale in place
        out = samples if grid_neg is not None else np.empty_like(samples)
        new_samples = _scale_samples(samples, pos, mapped, f_draw, out)
    else:
        new_samples = new_point[:, None]

    # --- table, alerts, summary
    used = ~empty
    os_c = c_sorted % n_os
    origin_c = os_c // max_step + lo
    step_c = os_c % max_step + 1
    table = pd.DataFrame({
        "origin": origin_c,
        "step": step_c,
        "month_id": origin_c + step_c,
        "country_id": c_sorted // n_os,
        "cells": cells,
        "country_forecast": c_point,
        "grid_sum": sums,
        "factor": factor,
        "reconciled_sum": np.where(positive, c_point, 0.0),
    })[used].sort_values(["origin", "step", "country_id"], kind="stable").reset_index(drop=True)
    pos_t = table["grid_sum"].to_numpy() > 0
    f_t = table["factor"].to_numpy()
    big = np.maximum(table["grid_sum"].to_numpy(), table["country_forecast"].to_numpy())
    beyond = pos_t & ((f_t > max_factor) | (f_t < min_factor)) & (big >= min_deaths)
    zero_sum = ~pos_t & (table["country_forecast"].to_numpy() > 0)
    alerts += _factor_alerts(table, beyond, label=label, max_factor=max_factor,
                             min_factor=min_factor)
    alerts += _zero_sum_alerts(table, zero_sum, label=label)

    unmapped = owner == UNMAPPED
    if unmapped.any():
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING,
            message=(f"{label}: {int(unmapped.sum()):,} cell-months are not in the mapping "
                     f"{ownership.source} (cells {_list(g_gid[unmapped])}); they have no "
                     "country and were left unreconciled. Add them to the mapping, with "
                     "country_id -1 if they belong to no country"),
            offender=ownership.source, value=float(unmapped.sum()),
            details={"kind": "unmapped", "cells": np.unique(g_gid[unmapped]).tolist()[:100]},
        ))
    if lost_draws > 0:
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING,
            message=(f"{label}: in {lost_draws:,} (country-month, draw) pairs the cells' draw "
                     "sums to 0 while the country's draw is positive; those cell draws stay 0"),
            offender=grid_model, value=float(lost_draws),
            details={"kind": "zero_grid_sum_draws", "draws": lost_draws},
        ))
    finite = f_t[pos_t]
    summary: dict[str, Any] = {
        "grid_model": grid_model,
        "country_model": country_model,
        "ownership": ownership.source,
        "ownership_per_month": ownership.per_month,
        "country_months": int(used.sum()),
        "countries": int(table["country_id"].nunique()),
        "cell_months": int(mapped.sum()),
        "cell_months_without_country": int((~mapped).sum()),
        "cell_months_unmapped": int(unmapped.sum()),
        "factor_alerts": int(beyond.sum()),
        "zero_sum_alerts": int(zero_sum.sum()),
        "zero_sum_draws": lost_draws,
        "factor_min": float(finite.min()) if len(finite) else None,
        "factor_median": float(np.median(finite)) if len(finite) else None,
        "factor_max": float(finite.max()) if len(finite) else None,
        "max_factor": max_factor,
        "min_factor": min_factor,
        "countries_outside_grid": outside_summary,
        "samples": "per draw" if s_grid > 1 else "point only",
    }
    result = Forecast(frame=grid.frame, point=new_point, samples=np.ascontiguousarray(new_samples),
                      unit_column=grid.unit_column)
    return Reconciliation(forecast=result, alerts=tuple(alerts), table=table, summary=summary)

