"""Synthetic demo world: a cm + pgm panel so the whole pipeline runs offline, anywhere.

The world imitates what matters about the real data for a forecasting pipeline, not reality:

* **cm**: zero-inflated, heavy-tailed, persistent counts. Each country switches between peace
  and conflict (Markov chain with long episodes); in conflict the log intensity follows an
  AR(1) with occasional bursts, and deaths are Poisson around it. After about two years of
  violence without a break a country pauses for a month (no deaths of any type). A few
  countries split, merge or secede, so the last month's entity set is smaller than the
  ever-seen set. The world is steady enough that every drift detector stays quiet on it in
  every month (``ewspipe.drift.selftest``; tests/drift/test_selftest.py checks 2025-2035).
* **pgm**: a round patch of the real 0.5-degree PRIO-GRID lattice centred in Africa, cut into
  countries that exist in every month. Each country-month total is split into heavy-tailed
  events placed on cells by a drifting latent field with fading hotspots (the allocation of
  ``shared/data/pgm_semisynthetic``), so cells are clumped in space and time and sum exactly
  to the cm totals.
* **global** (``pgm_cells = "global"``): every cell of the PRIO-GRID table
  (:mod:`ewspipe.panel.global_grid`, 66,205 cells) with its real owner; the cm countries are
  the owners (their VIEWS ids and names, no border changes), allocated the same way. The
  ~29 M pgm rows are produced month by month (:meth:`DemoWorld.pgm_blocks`).

Reproducibility: every random draw comes from a generator keyed by (seed, stream, month_id),
so the world is byte-identical for the same settings and a longer span only appends months
(next month's demo extends this month's, as real data would).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import InputError
from ewspipe.panel.global_grid import GLOBAL, load_global_grid
from ewspipe.panel.months import last_complete_month_id
from ewspipe.panel.priogrid import cell_centre, gid_from_rowcol
from ewspipe.settings import DemoSettings

__all__ = ["COUNT_COLUMNS", "DemoParams", "DemoWorld", "demo_world"]

COUNT_COLUMNS: tuple[str, str, str] = ("ged_sb", "ged_ns", "ged_os")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Independent random streams; month-keyed streams make the world prefix-stable.
_STATIC, _CM, _PGM = 0, 1, 2
_INIT_MONTH = 0  # key of the draws that set the state before the first month


@dataclass(frozen=True)
class DemoParams:
    """Model constants. Tuples hold one value per count column (ged_sb, ged_ns, ged_os)."""

    # --- cm: conflict episodes (Markov switching) and intensity (AR(1) on the log scale)
    onset_logit: tuple[float, float, float] = (-5.7, -6.5, -6.5)
    onset_slope: float = 1.5  # how strongly the country's propensity drives onsets
    onset_boost: float = 2.2  # logit boost of ns/os onsets while sb is in conflict
    duration_log: tuple[float, float, float] = (3.0, 2.8, 2.8)  # log mean episode months
    duration_slope: float = 0.6
    duration_sd: float = 0.5
    intensity_log: tuple[float, float, float] = (2.0, 1.2, 1.0)  # log deaths / month
    intensity_slope: float = 0.9
    intensity_sd: float = 0.8
    ar_phi: float = 0.85
    ar_sd: float = 0.45
    onset_drop: float = 1.0  # episodes start below their country's mean intensity
    burst_prob: float = 0.02
    burst_mean: float = 1.0  # mean jump of the log intensity in a burst
    lull_logit: float = 1.5  # quiet months inside an episode, likelier when intensity is low
    lull_slope: float = 0.9
    month_sd: float = 0.5  # month-to-month noise around the AR state: quiet and loud months
    # soft caps (sb ~5,000 deaths a month). Steady enough for the drift self-test to pass in
    # every month: ns/os are common and light-tailed (a handful of countries with rare,
    # huge months trips extreme_values, ks_drift and positive_shift), and the loudest sb
    # war saturates instead of setting a record 50 standard deviations out
    log_intensity_max: tuple[float, float, float] = (8.5, 5.5, 6.0)
    change_window: tuple[int, int] = (3, 150)  # months after the start with border changes
    pause_run: float = 24.0  # after ~this many violent months in a row a country pauses
    pause_slope: float = 1.5  # how sharply the pause hazard rises with the run length
    # --- pgm geometry
    centre_lat: float = 8.0
    centre_lon: float = 20.0
    cells_per_country: float = 40.0  # ~50 grid countries: ~40-100 positive cells a month
    # --- pgm allocation (the calibrated semi-synthetic model)
    temperature: float = 0.30
    kappa: float = 0.9
    rho: float = 0.95
    w_regional: float = 0.3
    sigma_regional: float = 6.0
    w_static: float = 0.3
    sigma_local: float = 0.5
    hotspot_birth: float = 0.2
    hotspot_amplitude: float = 2.0
    hotspot_radius: float = 1.0
    hotspot_halflife: float = 12.0
    # event sizes ceil(lognormal): median 2, mean ~5 (a lighter tail than the UCDP Syria
    # events' mean ~7.5, so a grid month is not one event's accident)
    event_log_median: float = 0.47
    event_log_sd: float = 1.4


@dataclass(frozen=True, eq=False)
class _PgmLayout:
    """What the pgm allocation needs: the cells, their owners and the cm totals to split."""

    seed: int
    months: IntArray
    gids: IntArray
    labels: IntArray  # dense owner label per cell
    owner_ids: IntArray  # country id per cell
    totals: IntArray  # (3, n_months, n_labels) cm counts of each label's country
    params: DemoParams
    static: np.random.Generator  # the static stream as the allocation starts: copied per use

    def blocks(self, months_per_block: int | None) -> Iterator[pd.DataFrame]:
        size = self.months.size if months_per_block is None else max(1, months_per_block)
        monthly = _allocate_pgm(self.seed, self.months, self.gids, self.labels, self.totals,
                                self.params, copy.deepcopy(self.static))
        for start in range(0, self.months.size, size):
            block = self.months[start:start + size]
            cells = [next(monthly) for _ in range(block.size)]
            yield _pgm_frame(block, self.gids, self.owner_ids, cells)


@dataclass(frozen=True, eq=False)
class DemoWorld:
    """The generated panels plus what produced them.

    ``cm`` and ``pgm`` hold raw integer counts (int64) sorted by (month_id, unit); every pgm
    cell belongs to a country present in every month, and per (country, month) the cells sum
    exactly to the cm row. ``countries`` lists each country id that occurs in ``cm``. ``pgm``
    is built on first use; :meth:`pgm_blocks` yields the same rows a few months at a time.
    """

    cm: pd.DataFrame
    countries: pd.DataFrame
    settings: DemoSettings
    first_month: int
    last_month: int
    layout: _PgmLayout
    params: DemoParams = field(default_factory=DemoParams)

    @property
    def pgm_cells(self) -> int:
        return int(self.layout.gids.size)

    @property
    def pgm_rows(self) -> int:
        return int(self.layout.gids.size * self.layout.months.size)

    def pgm_blocks(self, months_per_block: int | None = None) -> Iterator[pd.DataFrame]:
        """The pgm panel in blocks of ``months_per_block`` months (None: one block), each a
        frame like :attr:`pgm`; every call starts afresh and yields the same rows."""
        return self.layout.blocks(months_per_block)

    @cached_property
    def pgm(self) -> pd.DataFrame:
        return next(self.pgm_blocks(None))


# --------------------------------------------------------------------------- randomness


def _rng(seed: int, stream: int, key: int) -> np.random.Generator:
    entropy = [int(seed < 0), abs(int(seed)), stream, key]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- countries


@dataclass(frozen=True)
class _Roster:
    """Country ids and lifetimes; index i is country id i + 1."""

    first: IntArray  # first month with a row
    last: IntArray  # last month with a row (a huge number: never ends)
    parent: IntArray  # index whose conflict state a successor inherits, -1 for none
    stable: BoolArray  # exists in every month and never touched by a border change


_NEVER = np.iinfo(np.int64).max // 2


def _roster(n: int, first_month: int, params: DemoParams, rng: np.random.Generator) -> _Roster:
    """Base countries 1..n_base, then successor ids in order of appearance (like VIEWS ids).

    Changes fall in a fixed window after ``first_month``, independent of the last month, so
    the roster of a longer world is the same roster.
    """
    n_events = int(np.clip(2 + n // 60, 2, 8))
    extra = rng.choice(np.array(["split", "merger", "secession"]), n_events - 2)
    kinds = [str(k) for k in rng.permutation(np.array(["split", "merger", *extra]))]
    lo, hi = params.change_window
    months = np.sort(first_month + rng.integers(lo, hi, n_events))
    n_new = sum(2 if k == "split" else 1 for k in kinds)
    n_base = n - n_new
    pool = iter(rng.permutation(n_base).tolist())

    first = np.full(n, first_month, dtype=np.int64)
    last = np.full(n, _NEVER, dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    touched = np.zeros(n, dtype=bool)
    new_id = n_base
    for kind, month in zip(kinds, months, strict=True):
        n_parents, n_children = {"split": (1, 2), "merger": (2, 1), "secession": (1, 1)}[kind]
        parents = [next(pool) for _ in range(n_parents)]
        touched[parents] = True
        if kind != "secession":
            last[parents] = month - 1
        for _ in range(n_children):
            first[new_id] = month
            parent[new_id] = parents[0]
            touched[new_id] = True
            new_id += 1
    return _Roster(first=first, last=last, parent=parent, stable=~touched)


# --------------------------------------------------------------------------- cm


@dataclass(frozen=True)
class _CountryTraits:
    propensity: FloatArray  # (n,) latent conflict-proneness
    p_on: FloatArray  # (3, n) base onset logit
    p_off: FloatArray  # (3, n) per-month end probability of an episode
    mu: FloatArray  # (3, n) mean log intensity in conflict


def _traits(n: int, params: DemoParams, rng: np.random.Generator) -> _CountryTraits:
    z = rng.standard_normal(n)
    onset = np.asarray(params.onset_logit)[:, None] + params.onset_slope * z
    dur = np.exp(
        np.asarray(params.duration_log)[:, None]
        + params.duration_slope * z
        + params.duration_sd * rng.standard_normal((3, n))
    )
    mu = (
        np.asarray(params.intensity_log)[:, None]
        + params.intensity_slope * z
        + params.intensity_sd * rng.standard_normal((3, n))
    )
    return _CountryTraits(z, onset, 1.0 / np.clip(dur, 2.0, 600.0), mu)


def _simulate_cm(
    seed: int, months: IntArray, roster: _Roster, traits: _CountryTraits, params: DemoParams
) -> IntArray:
    """Counts (3, n_months, n_countries) for every country, alive or not (masked later)."""
    n = traits.propensity.size
    boost = np.array([0.0, params.onset_boost, params.onset_boost])[:, None]
    sd_stat = params.ar_sd / math.sqrt(1.0 - params.ar_phi**2)
    cap = np.asarray(params.log_intensity_max)[:, None]

    init = _rng(seed, _CM, _INIT_MONTH)
    p0 = _sigmoid(traits.p_on)
    share = p0 / (p0 + traits.p_off)
    state = init.random((3, n)) < share
    x = traits.mu + sd_stat * init.standard_normal((3, n))

    out = np.zeros((3, months.size, n), dtype=np.int64)
    run = np.zeros(n)  # months in a row with some violence
    starts = roster.parent >= 0
    for t, month in enumerate(months.tolist()):
        r = _rng(seed, _CM, month)
        u = r.random((3, 3, n))
        eps = r.standard_normal((3, 3, n))
        jump = r.exponential(params.burst_mean, (3, n))

        born = np.flatnonzero(starts & (roster.first == month))
        if born.size:  # successors carry on their parent's conflict
            src = roster.parent[born]
            state[:, born] = state[:, src]
            x[:, born] = x[:, src]
            run[born] = 0

        logit = traits.p_on + boost * state[0]
        p_on = _sigmoid(logit)
        new_state = np.where(state, u[0] >= traits.p_off, u[0] < p_on)
        onset = new_state & ~state
        x = traits.mu + params.ar_phi * (x - traits.mu) + params.ar_sd * eps[0]
        x += jump * (u[1] < params.burst_prob)
        x = np.where(onset, traits.mu - params.onset_drop + 0.5 * eps[1], x)
        x = np.clip(x, traits.mu - 4.0 * sd_stat, traits.mu + 4.0 * sd_stat + 3.0)
        state = new_state
        loud = cap - np.logaddexp(0.0, cap - (x + params.month_sd * eps[2]))  # soft ceiling
        lull = u[2] < _sigmoid(params.lull_logit - params.lull_slope * x)
        lam = np.where(state & ~lull, np.exp(loud), 0.0)
        counts = r.poisson(lam)
        # campaigns pause: a month with no violence at all becomes near-certain after two
        # years of it, so a silent month never follows 30 violent ones (which unit_zeros
        # rightly reads as a unit falling silent) and the world stays stationary
        pause = r.random(n) < _sigmoid(params.pause_slope * (run - params.pause_run))
        counts[:, pause] = 0
        run = np.where(counts.any(axis=0), run + 1, 0)
        out[:, t, :] = counts
    return out


# --------------------------------------------------------------------------- pgm geometry


def _region(n_cells: int, params: DemoParams) -> IntArray:
    """The n cells nearest the centre (ties by gid): a compact disc of real gids."""
    crow = (params.centre_lat + 90.0) / 0.5 + 0.5
    ccol = (params.centre_lon + 180.0) / 0.5 + 0.5
    radius = math.sqrt(n_cells / math.pi) + 3.0
    rows = np.arange(math.floor(crow - radius), math.ceil(crow + radius) + 1)
    cols = np.arange(math.floor(ccol - radius), math.ceil(ccol + radius) + 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    gids = gid_from_rowcol(rr.ravel(), cc.ravel())
    lat, lon = cell_centre(gids)
    d2 = ((lat - params.centre_lat) / 0.5) ** 2 + ((lon - params.centre_lon) / 0.5) ** 2
    chosen = gids[np.lexsort((gids, d2))[:n_cells]]
    return np.sort(chosen)


def _partition(coords: FloatArray, k: int, rng: np.random.Generator) -> IntArray:
    """Label 0..k'-1 per cell: a power diagram of Lloyd-relaxed seeds (convex blobs, unequal
    sizes). Empty labels are dropped, so k' <= k."""
    n = coords.shape[0]
    seeds = coords[rng.choice(n, size=k, replace=False)].copy()
    for _ in range(4):
        labels = _nearest(coords, seeds, np.zeros(k))
        for j in range(k):
            members = coords[labels == j]
            if members.size:
                seeds[j] = members.mean(axis=0)
    weights = rng.uniform(0.0, 0.6, k) * (n / k)
    labels = _nearest(coords, seeds, weights)
    for _ in range(8):
        if np.unique(labels).size == k:
            break
        weights *= 0.5
        labels = _nearest(coords, seeds, weights)
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def _nearest(coords: FloatArray, seeds: FloatArray, weights: FloatArray) -> IntArray:
    d2 = ((coords[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2) - weights[None, :]
    return d2.argmin(axis=1).astype(np.int64)


def _pick_countries(
    candidates: IntArray, k: int, propensity: FloatArray, rng: np.random.Generator
) -> IntArray:
    """k distinct countries, conflict-prone ones more likely (Gumbel top-k), so the grid has
    conflict to allocate even in small worlds."""
    score = 0.5 * propensity[candidates] + rng.gumbel(size=candidates.size)
    score[np.argmax(propensity[candidates])] = np.inf  # the grid always has a hot spot
    return candidates[np.argsort(-score, kind="stable")[:k]]


# --------------------------------------------------------------------------- pgm allocation


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> FloatArray:
    """Gaussian-smoothed white noise rescaled to unit variance."""
    from scipy.ndimage import gaussian_filter  # here: the CLI imports this module at start

    delta = np.zeros((int(8 * sigma) + 3,) * 2)
    delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
    norm = math.sqrt(float((gaussian_filter(delta, sigma) ** 2).sum()))
    return gaussian_filter(rng.standard_normal(shape), sigma) / norm


def _event_sizes(r: np.random.Generator, total: int, params: DemoParams) -> IntArray:
    """Heavy-tailed event sizes adding up to exactly ``total`` (the last one truncated)."""
    mean = math.exp(params.event_log_median + params.event_log_sd**2 / 2) + 0.5
    chunks: list[IntArray] = []
    acc = 0
    while acc < total:
        size = int(total / mean * 1.3) + 4
        draw = np.ceil(
            np.exp(params.event_log_median + params.event_log_sd * r.standard_normal(size))
        ).astype(np.int64)
        chunks.append(draw)
        acc += int(draw.sum())
    sizes = np.concatenate(chunks)
    csum = np.cumsum(sizes)
    stop = int(np.searchsorted(csum, total))
    sizes = sizes[: stop + 1].copy()
    sizes[-1] -= int(csum[stop]) - total
    return sizes


def _allocate_pgm(
    seed: int,
    months: IntArray,
    gids: IntArray,
    labels: IntArray,
    totals: IntArray,
    params: DemoParams,
    static: np.random.Generator,
) -> Iterator[IntArray]:
    """Cell counts (3, n_cells) month by month whose per-label sums equal ``totals``
    (3, m, k): the state carried between months is a few grid-sized arrays, so a global
    world never holds all its months."""
    n_cells = gids.size
    k = int(labels.max()) + 1
    row, col = np.divmod(gids - 1, 720)
    span = math.ceil(3 * params.hotspot_radius)
    pad = max(math.ceil(3 * max(params.sigma_regional, params.sigma_local)), span) + 2
    r0, c0 = row.min() - pad, col.min() - pad
    shape = (int(row.max() - r0 + pad + 1), int(col.max() - c0 + pad + 1))
    flat = (row - r0) * shape[1] + (col - c0)

    w_r, w = params.w_regional, params.w_static
    regional = _smooth_noise(static, shape, params.sigma_regional).ravel()[flat]
    local = _smooth_noise(static, shape, params.sigma_local).ravel()[flat]
    base = math.sqrt(w_r) * regional + math.sqrt((1 - w_r) * w) * local
    c_drift = math.sqrt((1 - w_r) * (1 - w))
    drift = _smooth_noise(_rng(seed, _PGM, _INIT_MONTH), shape, params.sigma_local)

    # cells grouped by label: country j owns order[bounds[j]:bounds[j + 1]]
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    # hotspots start where the regional field is high: cumulative weights, searched per country
    centre_cum = np.cumsum(np.exp(math.sqrt(w_r) * regional[order] / params.temperature))
    seg_end = centre_cum[bounds[1:] - 1]
    seg_start = np.concatenate([[0.0], seg_end[:-1]])

    owner = np.full(shape[0] * shape[1], -1, dtype=np.int64)
    owner[flat] = labels
    dr, dc = np.meshgrid(np.arange(-span, span + 1), np.arange(-span, span + 1), indexing="ij")
    offsets = (dr * shape[1] + dc).ravel()
    bump = params.hotspot_amplitude * np.exp(
        -((dr**2 + dc**2).ravel()) / (2 * params.hotspot_radius**2)
    )
    hot = np.zeros(shape[0] * shape[1])
    fade = 0.5 ** (1.0 / params.hotspot_halflife)
    innov = math.sqrt(1 - params.rho**2)
    temp = params.temperature
    ceiling = params.kappa / temp

    for t, month in enumerate(months.tolist()):
        out = np.zeros((3, n_cells), dtype=np.int64)
        r = _rng(seed, _PGM, month)
        drift = params.rho * drift + innov * _smooth_noise(r, shape, params.sigma_local)
        births = np.flatnonzero(r.random(k) < params.hotspot_birth)
        u_centre = r.random(k)
        hot *= fade
        if births.size:
            target = seg_start[births] + u_centre[births] * (seg_end[births] - seg_start[births])
            pos = np.clip(
                np.searchsorted(centre_cum, target, side="right"),
                bounds[births],
                bounds[births + 1] - 1,
            )
            centres = flat[order[pos]]
            idx = centres[:, None] + offsets[None, :]
            keep = owner[idx] == births[:, None]
            np.add.at(hot, idx[keep], np.broadcast_to(bump, idx.shape)[keep])

        month_totals = totals[:, t, :]
        active = np.flatnonzero(month_totals.sum(axis=0) > 0)
        if active.size == 0:
            yield out
            continue
        latent = base + c_drift * drift.ravel()[flat] + hot[flat]
        for j in active.tolist():
            cells = order[bounds[j] : bounds[j + 1]]
            a = (latent[cells] - latent[cells].max()) / temp
            p = np.exp(a) / (1.0 + np.exp(a + ceiling))
            cdf = np.cumsum(p)
            for c in range(3):
                total = int(month_totals[c, j])
                if total == 0:
                    continue
                sizes = _event_sizes(r, total, params)
                where = np.searchsorted(cdf, r.random(sizes.size) * cdf[-1], side="right")
                np.minimum(where, cells.size - 1, out=where)
                placed = np.bincount(where, weights=sizes, minlength=cells.size)
                out[c, cells] += placed.astype(np.int64)
        yield out


# --------------------------------------------------------------------------- public API


def _pgm_frame(months: IntArray, gids: IntArray, owner_ids: IntArray,
               cells: list[IntArray]) -> pd.DataFrame:
    """Rows (month, cell) of ``months`` from the per-month (3, n_cells) counts in ``cells``."""
    n_m, n_c = months.size, gids.size
    stacked = np.stack(cells, axis=1) if cells else np.zeros((3, 0, n_c), dtype=np.int64)
    return pd.DataFrame(
        {
            "month_id": np.repeat(months, n_c),
            "priogrid_gid": np.tile(gids, n_m),
            "country_id": np.tile(owner_ids, n_m),
            **{name: stacked[i].ravel() for i, name in enumerate(COUNT_COLUMNS)},
        }
    )


def _stable_roster(n: int, first_month: int) -> _Roster:
    """Countries that exist in every month: the global world's owners never change."""
    return _Roster(first=np.full(n, first_month, dtype=np.int64),
                   last=np.full(n, _NEVER, dtype=np.int64),
                   parent=np.full(n, -1, dtype=np.int64), stable=np.ones(n, dtype=bool))


def demo_world(
    settings: DemoSettings,
    *,
    last_month: int | None = None,
    params: DemoParams | None = None,
) -> DemoWorld:
    """Build the demo world for ``settings`` up to ``last_month``.

    ``last_month`` overrides ``settings.last_month``; when both are None it is the last complete
    calendar month, so the demo grows by one month per month like real data.
    ``settings.countries`` is the number of country ids ever seen; a few of them start late or
    end early. ``settings.pgm_cells`` is the exact number of grid cells, or ``"global"``: every
    cell of the PRIO-GRID table (:mod:`ewspipe.panel.global_grid`) with its real owner, the
    owners being the cm countries (``settings.countries`` does not apply). The pgm panel is
    built lazily: :meth:`DemoWorld.pgm_blocks` streams it a few months at a time.

    Raises:
        InputError: for a last month before the first, or an absent global table.
    """
    params = params or DemoParams()
    first = int(settings.first_month)
    last = last_month if last_month is not None else settings.last_month
    last = int(last) if last is not None else last_complete_month_id()
    if last < first:
        raise InputError(
            f"demo world: last_month {last} is before first_month {first}; "
            "pass a last month on or after the first"
        )
    seed = int(settings.seed)
    months = np.arange(first, last + 1, dtype=np.int64)
    static = _rng(seed, _STATIC, 0)
    names: list[str]
    if settings.pgm_cells == GLOBAL:
        grid = load_global_grid()
        ids, labels = np.unique(grid.country_ids, return_inverse=True)
        n = ids.size
        roster = _stable_roster(n, first)
        traits = _traits(n, params, static)
        gids, labels = grid.gids, labels.astype(np.int64)
        owners = np.arange(n, dtype=np.int64)
        country_ids = ids.astype(np.int64)
        names = [grid.names.get(int(c), f"Country {int(c)}") for c in country_ids.tolist()]
    else:
        # countries are drawn before the grid, so cm does not depend on pgm_cells
        n = int(settings.countries)
        roster = _roster(n, first, params, static)
        traits = _traits(n, params, static)
        gids = _region(int(settings.pgm_cells), params)
        row, col = np.divmod(gids - 1, 720)
        coords = np.column_stack([row, col]).astype(np.float64)
        stable = np.flatnonzero(roster.stable)
        k_wanted = min(max(3, round(gids.size / params.cells_per_country)), stable.size)
        labels = _partition(coords, k_wanted, static)
        k = int(labels.max()) + 1
        owners = _pick_countries(stable, k, traits.propensity, static)
        country_ids = np.arange(1, n + 1, dtype=np.int64)
        names = [f"Demoland {i + 1}" for i in range(n)]

    counts = _simulate_cm(seed, months, roster, traits, params)

    # cm: only alive country-months
    alive = (months[:, None] >= roster.first[None, :]) & (months[:, None] <= roster.last[None, :])
    t_idx, c_idx = np.nonzero(alive)
    cm = pd.DataFrame(
        {
            "month_id": months[t_idx],
            "country_id": country_ids[c_idx],
            **{name: counts[i, t_idx, c_idx] for i, name in enumerate(COUNT_COLUMNS)},
        }
    )

    seen = np.flatnonzero(alive.any(axis=0))
    has_cells = np.zeros(n, dtype=bool)
    has_cells[owners] = True
    countries = pd.DataFrame(
        {
            "country_id": country_ids[seen],
            "name": [names[i] for i in seen.tolist()],
            "first_month": roster.first[seen],
            "last_month": np.minimum(roster.last[seen], last),
            "has_cells": has_cells[seen],
        }
    )
    layout = _PgmLayout(seed=seed, months=months, gids=gids, labels=labels,
                        owner_ids=country_ids[owners][labels], totals=counts[:, :, owners],
                        params=params, static=copy.deepcopy(static))
    return DemoWorld(
        cm=cm,
        countries=countries,
        settings=settings,
        first_month=first,
        last_month=last,
        params=params,
        layout=layout,
    )
