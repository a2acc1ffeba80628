"""Feature transforms: a registry of small kernels selected by the names model files use.

Kernels see the panel as a dense (month x unit) grid (:class:`Grid`): "k months earlier in the
same unit" is a row shift, "the same month" is one row, so nothing loops over units and no value
can leak from one unit into the next. Every kernel at month t reads only rows <= t (causal), and
returns a new array that is NaN wherever the panel has no row or the feature is undefined.
The cm neighbour and region kernels also read which countries border each other, and where they
lie, from the PRIO-GRID cell -> country table (:mod:`ewspipe.geography.adjacency`), on first use.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import InputError, SpecError
from ewspipe.geography.adjacency import CountryGraph, country_graph, great_circle_km
from ewspipe.panel.priogrid import cell_centre, queen_neighbours
from ewspipe.panel.schema import TIME_COLUMN, Level, Panel

__all__ = ["MAX_MONTHS", "Grid", "Param", "Transform", "did_you_mean", "get_transform", "names"]

FloatGrid = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolGrid = npt.NDArray[np.bool_]
Kernel = Callable[..., FloatGrid]
Number = int | float

_NAN = np.nan
_COUNTRY = "country_id"

#: The hard cap of every parameter counted in months (a lag, a window, a half-life): 100
#: years, far beyond any panel (monthly data since 1989). Checked when an expression is
#: parsed, before any data is read or any array built; ``models check`` also bounds them by
#: the training windows of the partitions (see ``expressions.check_lookback``).
MAX_MONTHS = 1200


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True, eq=False)
class Grid:
    """A panel as (months x units) arrays; row i is month ``first_month + i``, column j unit
    ``units[j]``. ``flat`` places each panel row in the raveled grid (None: the identity, when
    every month has every unit, as in the full pgm panel)."""

    level: Level
    first_month: int
    units: IntArray
    present: BoolGrid
    flat: IntArray | None
    frame: pd.DataFrame

    @classmethod
    def from_panel(cls, panel: Panel) -> Grid:
        frame = panel.frame
        months = frame[TIME_COLUMN].to_numpy(np.int64)
        units_col = frame[panel.unit_column].to_numpy(np.int64)
        first = int(months[0])
        n_months = int(months[-1]) - first + 1
        full = _full_rectangle(months, units_col, n_months)
        if full is not None:  # every month the same units: no row index to build
            units, flat = full, None
            size = n_months * len(units)
        else:
            units, index = _dense_index(units_col)
            size = n_months * len(units)
            flat = None if size == len(frame) else (months - first) * len(units) + index
        present = np.ones(size, dtype=bool)
        if flat is not None:
            present[:] = False
            present[flat] = True
        return cls(panel.level, first, units, present.reshape(n_months, len(units)), flat, frame)

    @property
    def shape(self) -> tuple[int, int]:
        return self.present.shape  # type: ignore[return-value]

    @property
    def full(self) -> bool:
        return self.flat is None

    def to_grid(self, values: npt.ArrayLike) -> FloatGrid:
        """Panel-row values as a new grid, NaN where the panel has no row."""
        arr = np.asarray(values, dtype=np.float64)
        if self.flat is None:
            return arr.reshape(self.shape).copy()
        out = np.full(self.present.size, _NAN)
        out[self.flat] = arr
        return out.reshape(self.shape)

    def to_rows(self, grid: FloatGrid, start: int = 0) -> npt.NDArray[np.float64]:
        """Grid values in panel-row order, from panel row ``start`` on."""
        raveled = grid.reshape(-1)
        return raveled[start:] if self.flat is None else raveled[self.flat[start:]]

    def column(self, name: str) -> FloatGrid:
        series = self.frame[name]
        if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            raise SpecError(
                f"column {name!r} is not numeric (dtype {series.dtype}); features are numbers. "
                "Fix: encode the column as numbers in the panel, or drop it from the features"
            )
        return self.to_grid(series.to_numpy(dtype=np.float64, na_value=_NAN))

    def mask(self, grid: FloatGrid) -> FloatGrid:
        """``grid`` with NaN where the panel has no row (in place; returns it)."""
        if self.flat is not None:
            grid[~self.present] = _NAN
        return grid

    @cached_property
    def start(self) -> IntArray:
        """Row of each unit's first month."""
        return np.argmax(self.present, axis=0).astype(np.int64)

    @cached_property
    def neighbours(self) -> IntArray:
        """(units x 8) columns of each unit's queen neighbours in the grid; ``len(units)`` marks
        a neighbour that is not in the panel (it reads a column of zeros)."""
        n = len(self.units)
        src, dst = queen_neighbours(self.units)
        src_i = np.searchsorted(self.units, src)
        dst_i = np.searchsorted(self.units, dst)
        dst_i = np.minimum(dst_i, n - 1)
        known = self.units[dst_i] == dst
        src_i, dst_i = src_i[known], dst_i[known]
        order = np.argsort(src_i, kind="stable")
        src_i, dst_i = src_i[order], dst_i[order]
        group_start = np.searchsorted(src_i, src_i)
        slot = np.arange(len(src_i)) - group_start
        table = np.full((n, 8), n, dtype=np.int64)
        table[src_i, slot] = dst_i
        return table

    @cached_property
    def country_graph(self) -> CountryGraph:
        """Borders and centres of the countries (cm), from the PRIO-GRID cell table."""
        try:
            return country_graph()
        except InputError as exc:
            raise SpecError(
                f"the neighbour and region transforms ({', '.join(_GEOGRAPHY)}) at cm need the "
                f"PRIO-GRID cell -> country table to know which countries border each other: "
                f"{exc}") from None

    @cached_property
    def country_neighbours(self) -> IntArray:
        """(units x most neighbours) columns of each country's neighbouring countries in the
        panel, padded with ``len(units)`` (a column of zeros); a country without cells in the
        table has none."""
        left, right = self.country_graph.pairs
        return _link_table(self.units, left, right)

    @cached_property
    def country_distances(self) -> FloatGrid:
        """(units x units) great-circle km between country centres; NaN off the diagonal for
        a country without cells (it has no centre), 0 on it."""
        lat, lon = self.country_graph.centres(self.units)
        km = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        np.fill_diagonal(km, 0.0)
        return km

    @cached_property
    def countries(self) -> tuple[npt.NDArray[np.int32], int]:
        """(grid of dense country indices, -1 for no country or no row; number of countries)."""
        # shifted ids: 0 = no country (id < 0, missing, or no row), else country id + 1
        series = self.frame[_COUNTRY]
        if self.flat is None and pd.api.types.is_integer_dtype(series.dtype) \
                and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
            shifted = series.to_numpy(np.int64, copy=True).reshape(self.shape)
            np.maximum(shifted, -1, out=shifted)
            shifted += 1
        else:  # rows missing from the grid, or missing ids: through the float grid (NaN)
            ids = self.column(_COUNTRY)
            with np.errstate(invalid="ignore"):
                shifted = np.where(ids >= 0, ids + 1, 0).astype(np.int64)
        seen = np.bincount(shifted.reshape(-1))[1:] > 0
        lookup = np.concatenate([[-1], np.cumsum(seen, dtype=np.int64) - 1]).astype(np.int32)
        return lookup[shifted], int(seen.sum())  # int32: half the memory of a grid of int64


def _full_rectangle(months: IntArray, units: IntArray, n_months: int) -> IntArray | None:
    """The units, if every month of these rows (sorted by month, unit) holds the same units
    in the same order, else None."""
    if len(units) == 0 or len(units) % n_months:
        return None
    width = len(units) // n_months
    first = units[:width]
    if width > 1 and not (first[1:] > first[:-1]).all():
        return None
    grid_units = units.reshape(n_months, width)
    grid_months = months.reshape(n_months, width)
    expected = np.arange(months[0], months[0] + n_months, dtype=np.int64)[:, None]
    if not ((grid_units == first).all() and (grid_months == expected).all()):
        return None
    return first.copy()


def _dense_index(values: IntArray) -> tuple[IntArray, IntArray]:
    """Sorted unique values and each value's position in them; a lookup table when ids are
    small (always, for country ids and PRIO-GRID gids), which avoids sorting millions of rows."""
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 4 * len(values) + 1_000_000:
        seen = np.zeros(hi + 1, dtype=bool)
        seen[values] = True
        uniq = np.flatnonzero(seen)
        lookup = np.cumsum(seen, dtype=np.int64) - 1
        return uniq.astype(np.int64), lookup[values]
    uniq, index = np.unique(values, return_inverse=True)
    return uniq.astype(np.int64), index.astype(np.int64)


def _link_table(units: IntArray, left: IntArray, right: IntArray) -> IntArray:
    """(units x k) table of the columns linked to each unit by the pairs (``left[i]`` ->
    ``right[i]``), restricted to ``units`` and padded with ``len(units)``; at least one
    column, so an empty table still sums to 0."""
    n = len(units)
    if n == 0:
        return np.zeros((0, 1), dtype=np.int64)
    src = np.minimum(np.searchsorted(units, left), n - 1)
    dst = np.minimum(np.searchsorted(units, right), n - 1)
    known = (units[src] == left) & (units[dst] == right)
    src, dst = src[known], dst[known]
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    slot = np.arange(len(src)) - np.searchsorted(src, src)
    table = np.full((n, max(int(slot.max(initial=-1)) + 1, 1)), n, dtype=np.int64)
    table[src, slot] = dst
    return table


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Param:
    """A numeric parameter; ``low`` is its lower bound (exclusive when ``low_open``),
    ``high`` its upper bound (inclusive); ``months``: it counts months (a lag, a window, a
    half-life), which bounds it by the history a model trains on."""

    name: str
    kind: type[int] | type[float]
    default: Number | None = None
    low: Number | None = None
    low_open: bool = False
    why: str = ""
    high: Number | None = None
    months: bool = False

    def describe(self) -> str:
        return self.name if self.default is None else f"{self.name}={_fmt(self.default)}"


@dataclass(frozen=True)
class Transform:
    """One named transform: its signature, where it is valid, and its kernel."""

    name: str
    summary: str
    example: str
    kernel: Kernel
    inputs: int = 1
    params: tuple[Param, ...] = ()
    levels: frozenset[Level] = frozenset(Level)
    needs: tuple[str, ...] = ()
    column_only: bool = False
    reach: Callable[[tuple[Number, ...]], int] | None = None

    @property
    def signature(self) -> str:
        slots = ["x"] * self.inputs + [p.describe() for p in self.params]
        if self.column_only:
            slots = ["column", *slots[1:]]
        return f"{self.name}({', '.join(slots)})"

    @property
    def n_required(self) -> int:
        return self.inputs + sum(p.default is None for p in self.params)

    def __call__(self, grid: Grid, *args: FloatGrid | Number) -> FloatGrid:
        return self.kernel(grid, *args)


_TRANSFORMS: dict[str, Transform] = {}


def names() -> list[str]:
    """Every transform name a feature expression may use, sorted."""
    return sorted(_TRANSFORMS)


def get_transform(name: str) -> Transform:
    """The transform called ``name``.

    Raises:
        SpecError: unknown name, with the closest valid names and the full list.
    """
    try:
        return _TRANSFORMS[name]
    except KeyError:
        raise SpecError(f"unknown transform {name!r}{did_you_mean(name, names())}; valid "
                        f"transforms: {', '.join(names())}") from None


def did_you_mean(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, options, n=2, cutoff=0.6)
    if not close:
        close = [o for o in options if o.lower() == word.lower()]
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _fmt(value: Number) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _register(
    name: str, summary: str, example: str, *, inputs: int = 1, params: tuple[Param, ...] = (),
    levels: frozenset[Level] = frozenset(Level), needs: tuple[str, ...] = (),
    column_only: bool = False, reach: Callable[[tuple[Number, ...]], int] | None = None,
) -> Callable[[Kernel], Kernel]:
    """``reach``: how many months before t the value at t reads, from the parameters (None:
    none; the value at t reads only month t of its inputs)."""

    def add(kernel: Kernel) -> Kernel:
        _TRANSFORMS[name] = Transform(name, summary, example, kernel, inputs, params, levels,
                                      needs, column_only, reach)
        return kernel

    return add


_PGM = frozenset({Level.PGM})
_CM = frozenset({Level.CM})
_WINDOW = Param("w", int, low=1, why="a window covers at least one month", high=MAX_MONTHS,
                months=True)


# --------------------------------------------------------------------------- time kernels


@_register("lag", "the value k months earlier in the same unit", "lag(ged_sb, 1)",
           params=(Param("k", int, low=0, why="a negative lag would read the future",
                         high=MAX_MONTHS, months=True),),
           reach=lambda p: int(p[0]))
def _lag(grid: Grid, x: FloatGrid, k: int) -> FloatGrid:
    out = np.full_like(x, _NAN)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _window_sum(x: FloatGrid, w: int) -> FloatGrid:
    """Sum over months t-w+1..t of one unit; NaN unless all w months have a defined value.

    Running sums go down each unit's own column, so a window's value depends only on that
    unit's months up to t (exact for counts, and the same whatever follows t). They are added
    one month at a time into a ring of the last w + 1 months (the additions of a cumulative sum
    down the column, in the same order): no grid-sized temporaries beside the result, which
    matters on the global pgm grid (234 MB per grid)."""
    months = len(x)
    out = np.full_like(x, _NAN)
    if w > months:
        return out
    size = w + 1
    total = np.zeros((size, x.shape[1]))  # total[t % size]: sum of months < t
    holes = np.zeros((size, x.shape[1]), dtype=np.int32)  # the same, counting NaN months
    value = np.empty(x.shape[1])
    missing = np.empty(x.shape[1], dtype=bool)
    for t in range(months):
        before, now = t % size, (t + 1) % size
        np.isnan(x[t], out=missing)
        np.copyto(value, x[t])
        value[missing] = 0.0
        np.add(total[before], value, out=total[now])
        np.add(holes[before], missing, out=holes[now])
        if t >= w - 1:  # sums of months t-w+1..t: total(t + 1) - total(t + 1 - w)
            first = (t + 1 - w) % size
            np.subtract(total[now], total[first], out=out[t])
            out[t][holes[now] != holes[first]] = _NAN
    return out


@_register("msum", "moving sum over the w months ending at t (inclusive), same unit",
           "msum(ged_sb, 12)", params=(_WINDOW,), reach=lambda p: int(p[0]) - 1)
def _msum(grid: Grid, x: FloatGrid, w: int) -> FloatGrid:
    return _window_sum(x, w)


@_register("mmean", "moving mean over the w months ending at t (inclusive), same unit",
           "mmean(ged_sb, 12)", params=(_WINDOW,), reach=lambda p: int(p[0]) - 1)
def _mmean(grid: Grid, x: FloatGrid, w: int) -> FloatGrid:
    out = _window_sum(x, w)
    out /= w
    return out


def _time_since(grid: Grid, x: FloatGrid, threshold: float) -> FloatGrid:
    """Months since the last month >= threshold, one month at a time (a running maximum of
    the months reached, carried per unit: no grid-sized temporaries beside the result)."""
    out = np.empty_like(x)
    last = grid.start - 1  # never reached: count from the month before the unit's first row
    reached = np.empty(x.shape[1], dtype=bool)
    for t in range(len(x)):
        np.greater_equal(x[t], threshold, out=reached)  # NaN never reaches a threshold
        last[reached] = t
        np.subtract(t, last, out=out[t], casting="unsafe")
        out[t][np.isnan(x[t])] = _NAN
    return out


@_register("time_since", "months since the unit's value was last >= threshold (0 in such a "
           "month); never reached: months since the month before the unit's first row",
           "time_since(ged_sb, 1)", params=(Param("threshold", float),))
def _time_since_kernel(grid: Grid, x: FloatGrid, threshold: float) -> FloatGrid:
    return _time_since(grid, x, threshold)


@_register("decay", "2 ** (-time_since(x, threshold) / halflife)", "decay(ged_sb, 12)",
           params=(Param("halflife", float, low=0, low_open=True,
                         why="a half-life is a positive number of months", high=MAX_MONTHS,
                         months=True),
                   Param("threshold", float, default=1)))
def _decay(grid: Grid, x: FloatGrid, halflife: float, threshold: float) -> FloatGrid:
    out = _time_since(grid, x, threshold)
    out /= -halflife
    return np.exp2(out, out=out)


@_register("delta", "x - lag(x, k): the change over the last k months, same unit (NaN when "
           "either month is undefined)", "delta(ged_sb, 3)",
           params=(Param("k", int, low=1, why="a change spans at least one month",
                         high=MAX_MONTHS, months=True),),
           reach=lambda p: int(p[0]))
def _delta(grid: Grid, x: FloatGrid, k: int) -> FloatGrid:
    out = _lag(grid, x, k)
    np.subtract(x, out, out=out)
    return out


@_register("time_since_first", "months since the unit's first month with x >= threshold (0 in "
           "that month; the onset, counted from the unit's first row); -1 before it",
           "time_since_first(ged_sb, 25)", params=(Param("threshold", float, default=1),))
def _time_since_first(grid: Grid, x: FloatGrid, threshold: float) -> FloatGrid:
    hit = x >= threshold  # NaN never reaches a threshold
    first = np.where(hit.any(axis=0), hit.argmax(axis=0), len(x))
    since = np.arange(len(x), dtype=np.int64)[:, None] - first
    out = np.where(since >= 0, since, -1).astype(np.float64)
    out[np.isnan(x)] = _NAN
    return out


@_register("spell", "months in a row ending at t with x >= threshold (the current spell's "
           "length; 0 when x < threshold at t); a month without a value ends a spell, and "
           "the unit's first row starts counting",
           "spell(ged_sb, 25)", params=(Param("threshold", float, default=1),))
def _spell(grid: Grid, x: FloatGrid, threshold: float) -> FloatGrid:
    """One month at a time, a running count per unit reset where the threshold is missed (a
    NaN never reaches it): no grid-sized temporaries beside the result."""
    out = np.empty_like(x)
    run = np.zeros(x.shape[1])
    reached = np.empty(x.shape[1], dtype=bool)
    for t in range(len(x)):
        np.greater_equal(x[t], threshold, out=reached)
        run += 1.0
        run[~reached] = 0.0
        out[t] = run
        out[t][np.isnan(x[t])] = _NAN
    return out


@_register("time_since_peak", "months since the largest x of the w months ending at t (0 when "
           "t holds it; ties: the earliest, so a flat window gives w - 1), same unit; NaN "
           "unless all w months have a value",
           "time_since_peak(ged_sb, 24)", params=(_WINDOW,), reach=lambda p: int(p[0]) - 1)
def _time_since_peak(grid: Grid, x: FloatGrid, w: int) -> FloatGrid:
    months = len(x)
    out = np.full_like(x, _NAN)
    if w > months:
        return out
    # w passes over each block of _ROW_BLOCK months (vectorised over months and units); the
    # block's running maxima stay in cache across the passes
    best = np.empty((_ROW_BLOCK, x.shape[1]))
    better = np.empty((_ROW_BLOCK, x.shape[1]), dtype=bool)
    for lo in range(w - 1, months, _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, months)
        top, newer, since = best[:hi - lo], better[:hi - lo], out[lo:hi]
        np.copyto(top, x[lo - w + 1:hi - w + 1])  # from the window's first month on
        since[:] = w - 1
        for d in range(w - 2, -1, -1):
            later = x[lo - d:hi - d]
            np.greater(later, top, out=newer)  # strictly: a tie keeps the earlier month
            np.copyto(top, later, where=newer)
            np.copyto(since, float(d), where=newer)
    holes = _window_sum(np.isnan(x).astype(np.float64), w)
    out[holes != 0] = _NAN  # a month without a value in the window, or t < w - 1 (NaN)
    return out


# --------------------------------------------------------------------------- pointwise kernels


@_register("log1p", "log(1 + x); NaN where x <= -1", "log1p(ged_sb)")
def _log1p(grid: Grid, x: FloatGrid) -> FloatGrid:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log1p(x)
    out[x <= -1] = _NAN  # log1p(-1) = -inf would turn moving sums of it into NaN - inf
    return out


@_register("static", "a time-invariant covariate column (checked constant within each unit)",
           "static(pop)", column_only=True)
def _static(grid: Grid, x: FloatGrid) -> FloatGrid:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN units are fine here
        low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    varies = np.flatnonzero(~np.isnan(low) & (low != high))
    if len(varies):
        j = int(varies[0])
        raise SpecError(
            f"static() declares a time-invariant column, but it varies within {len(varies)} "
            f"unit{'s' if len(varies) > 1 else ''} (e.g. unit {int(grid.units[j])}: "
            f"{_fmt(low[j])} .. {_fmt(high[j])}). Fix: "
            "use the bare column name for a time-varying column"
        )
    return x.copy()


@_register("lat", "latitude of the cell centre (degrees)", "lat()", inputs=0, levels=_PGM)
def _lat(grid: Grid) -> FloatGrid:
    lat, _ = cell_centre(grid.units)
    return grid.mask(np.broadcast_to(lat, grid.shape).copy())


@_register("lon", "longitude of the cell centre (degrees)", "lon()", inputs=0, levels=_PGM)
def _lon(grid: Grid) -> FloatGrid:
    _, lon = cell_centre(grid.units)
    return grid.mask(np.broadcast_to(lon, grid.shape).copy())


# --------------------------------------------------------------------------- space kernels


def _table_sum(x: FloatGrid, table: IntArray) -> FloatGrid:
    """Per month, the sum of x over the columns in each unit's row of ``table`` (index
    ``len(units)``: a column of zeros); NaN in x counts as 0. Each output month reads only the
    same month of x, and adds the linked values in the table's order whatever else the grid
    holds, so a value never depends on other months."""
    # _ROW_BLOCK months at a time: the gathers stay in cache and the temporaries are small;
    # every index is valid by construction (the last column is the 0 absent neighbours read),
    # so take() skips its bounds check (mode="clip")
    slots = np.ascontiguousarray(table.T)
    out = np.empty_like(x)
    padded = np.zeros((_ROW_BLOCK, x.shape[1] + 1))
    gathered = np.empty((_ROW_BLOCK, x.shape[1]))
    for lo in range(0, len(x), _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, len(x))
        part, extra, block = padded[:hi - lo], gathered[:hi - lo], out[lo:hi]
        np.copyto(part[:, :-1], x[lo:hi])
        part[np.isnan(part)] = 0.0
        np.take(part, slots[0], axis=1, out=block, mode="clip")
        for slot in slots[1:]:
            np.take(part, slot, axis=1, out=extra, mode="clip")
            block += extra
    return out


def _table_mean(x: FloatGrid, table: IntArray) -> FloatGrid:
    """Mean of x over the linked units with a value that month; 0 where none has one."""
    sums = _table_sum(x, table)
    counts = _table_sum((~np.isnan(x)).astype(np.float64), table)
    np.divide(sums, counts, out=sums, where=counts > 0)
    return sums


@_register("splag", "sum of x over the 8 queen neighbours in the same month; neighbours "
           "without a row (or with x undefined) count as 0", "splag(lag(ged_sb, 1))",
           levels=_PGM)
def _splag(grid: Grid, x: FloatGrid) -> FloatGrid:
    out = _table_sum(x, grid.neighbours)
    out[np.isnan(x)] = _NAN
    return out


def _neighbour_table(grid: Grid) -> IntArray:
    return grid.country_neighbours if grid.level is Level.CM else grid.neighbours


@_register("nb_sum", "sum of x over the neighbouring units in the same month: at cm the "
           "countries bordering it (a cell of each is a queen neighbour of a cell of the other "
           "in the PRIO-GRID cell table), at pgm the 8 queen neighbours (= splag); "
           "neighbours without a row or a value count as 0, a unit without neighbours "
           "gets 0", "nb_sum(lag(ged_sb, 1))")
def _nb_sum(grid: Grid, x: FloatGrid) -> FloatGrid:
    out = _table_sum(x, _neighbour_table(grid))
    out[np.isnan(x)] = _NAN
    return out


@_register("nb_mean", "mean of x over the neighbouring units (as nb_sum) that have a row "
           "and a value in the same month; 0 when none has", "nb_mean(lag(ged_sb, 1))")
def _nb_mean(grid: Grid, x: FloatGrid) -> FloatGrid:
    out = _table_mean(x, _neighbour_table(grid))
    out[np.isnan(x)] = _NAN
    return out


_RADIUS = Param("radius", float, low=0, why="a radius is a distance in km >= 0",
                high=20_038)  # half the Earth's circumference: every country


def _region_table(grid: Grid, radius: float) -> IntArray:
    """Each country's region: the countries whose centres lie within ``radius`` km of its
    centre, itself included (a country without cells: itself only)."""
    km = grid.country_distances
    src, dst = np.nonzero(km <= radius)  # NaN compares False
    return _link_table(grid.units, grid.units[src], grid.units[dst])


@_register("region_sum", "sum of x over the countries whose centre lies within radius km "
           "of the country's centre (itself included; centres from the PRIO-GRID cell "
           "table) in the same month; countries without a row or a value count as 0",
           "region_sum(lag(ged_sb, 1), 1000)", params=(_RADIUS,), levels=_CM)
def _region_sum(grid: Grid, x: FloatGrid, radius: float) -> FloatGrid:
    out = _table_sum(x, _region_table(grid, radius))
    out[np.isnan(x)] = _NAN
    return out


@_register("region_mean", "mean of x over the countries within radius km (as region_sum) "
           "that have a row and a value in the same month", "region_mean(lag(ged_sb, 1), 1000)",
           params=(_RADIUS,), levels=_CM)
def _region_mean(grid: Grid, x: FloatGrid, radius: float) -> FloatGrid:
    out = _table_mean(x, _region_table(grid, radius))
    out[np.isnan(x)] = _NAN
    return out


def _month_totals(x: FloatGrid) -> tuple[FloatGrid, FloatGrid]:
    """(sum of x over the units with a value, their number) per month, as (months x 1)."""
    valid = ~np.isnan(x)
    sums = np.where(valid, x, 0.0).sum(axis=1, keepdims=True)
    return sums, valid.sum(axis=1, keepdims=True).astype(np.float64)


@_register("global_sum", "sum of x over every unit with a row and a value in the same month "
           "(the world's level)", "global_sum(lag(ged_sb, 1))")
def _global_sum(grid: Grid, x: FloatGrid) -> FloatGrid:
    sums, _ = _month_totals(x)
    out = np.broadcast_to(sums, x.shape).copy()
    out[np.isnan(x)] = _NAN
    return out


@_register("global_mean", "mean of x over every unit with a row and a value in the same "
           "month", "global_mean(lag(ged_sb, 1))")
def _global_mean(grid: Grid, x: FloatGrid) -> FloatGrid:
    sums, counts = _month_totals(x)
    np.divide(sums, counts, out=sums, where=counts > 0)
    out = np.broadcast_to(sums, x.shape).copy()
    out[np.isnan(x)] = _NAN
    return out


_GEOGRAPHY = ("nb_sum", "nb_mean", "region_sum", "region_mean")


_ROW_BLOCK = 16  # months per block of the space kernels


def _country_totals(
    grid: Grid, x: FloatGrid, *, counts: bool
) -> tuple[FloatGrid, FloatGrid | None, BoolGrid]:
    """(sum over the cell's country this month, number of cells summed if ``counts``, cells
    with a value). A block of months at a time, every row of the block in one bincount (month
    t, country c -> bin t * (n + 1) + c; rows without a country or a value into a spare bin
    per month, with weight 0): the same additions, in the same order, as one bincount of the
    whole grid, without its grid-sized keys and weights."""
    codes, n = grid.countries
    width = n + 1
    own = (codes >= 0) & ~np.isnan(x)
    sums = np.empty_like(x)
    tally = np.empty_like(x) if counts else None
    for lo in range(0, len(x), _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, len(x))
        block = codes[lo:hi]
        keys = np.where(block >= 0, block, n).astype(np.int64)
        keys += np.arange(hi - lo, dtype=np.int64)[:, None] * width
        flat, mine, size = keys.reshape(-1), own[lo:hi], (hi - lo) * width
        weights = np.where(mine, x[lo:hi], 0.0).reshape(-1)
        sums[lo:hi] = np.bincount(flat, weights=weights, minlength=size)[keys]
        if tally is not None:
            tally[lo:hi] = np.bincount(flat, weights=mine.reshape(-1), minlength=size)[keys]
    return sums, tally, own


@_register("country_sum", "sum of x over the cells of the cell's country in the same month "
           "(country_id -1, no country: NaN)", "country_sum(lag(ged_sb, 1))", levels=_PGM,
           needs=(_COUNTRY,))
def _country_sum(grid: Grid, x: FloatGrid) -> FloatGrid:
    sums, _, own = _country_totals(grid, x, counts=False)
    sums[~own] = _NAN
    return sums


@_register("country_mean", "mean of x over the cells of the cell's country in the same month "
           "(country_id -1, no country: NaN)", "country_mean(lag(ged_sb, 1))", levels=_PGM,
           needs=(_COUNTRY,))
def _country_mean(grid: Grid, x: FloatGrid) -> FloatGrid:
    sums, counts, own = _country_totals(grid, x, counts=True)
    assert counts is not None
    sums[own] /= counts[own]
    sums[~own] = _NAN
    return sums

