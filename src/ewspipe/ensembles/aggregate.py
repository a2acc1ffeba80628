"""Aggregate member forecasts into an ensemble forecast (DOMAIN.md section 4).

Point forecasts are combined per (origin, step, month, unit) row by a registered aggregation:
``mean`` (optionally weighted), ``logmean`` (optionally weighted: expm1 of the mean of the
members' log1p points, the combination that suits MSLE, which scores log1p errors; it is
never above ``mean`` and lets one member's wild count move the point by at most its weight's
share in log terms) or ``median``. Sample forecasts can be *pooled*: the ensemble
keeps S draws per row, member m contributing ``round(w_m * S)`` of them (largest remainder, so
the counts add up to S), each member's draws picked at random per row with a fixed seed. The
pooled ensemble's point is the aggregated member points, so point metrics of a pooled
ensemble equal those of the same ensemble without pooling.

Members must cover exactly the same rows; a mismatch is an error naming the member and the
months and units it lacks. Rows are matched by key, not by position.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from ewspipe.arrays import Floats, Ints
from ewspipe.errors import InputError, did_you_mean
from ewspipe.models.forecast import INDEX_COLUMNS, Forecast

__all__ = [
    "SAMPLE_OPTIONS",
    "Aggregation",
    "SampleOption",
    "aggregate",
    "align_members",
    "get_aggregation",
    "names",
    "pool_samples",
    "weighted",
]

#: ``(members x rows) values, normalised weights or None -> (rows,) values``.
Aggregation = Callable[[Floats, Floats | None], Floats]
SampleOption = Literal["none", "pool"]
#: ``none``: the ensemble is a point forecast; ``pool``: members' draws are pooled.
SAMPLE_OPTIONS: tuple[SampleOption, ...] = ("none", "pool")
_POOL_BLOCK = 65_536  # rows per block when drawing, so the random keys stay small


def _mean(values: Floats, weights: Floats | None) -> Floats:
    if weights is None:
        return values.mean(axis=0)
    return np.tensordot(weights, values, axes=1)


def _logmean(values: Floats, weights: Floats | None) -> Floats:
    # a point below 0 (clipped later by post-processing) counts as 0: log1p needs > -1
    return np.expm1(_mean(np.log1p(np.maximum(values, 0.0)), weights))


def _median(values: Floats, weights: Floats | None) -> Floats:
    if weights is not None:
        raise InputError("aggregation 'median' takes no weights; use 'mean' or 'logmean' for "
                         "a weighted combination")
    return np.median(values, axis=0)


_AGGREGATIONS: dict[str, Aggregation] = {"logmean": _logmean, "mean": _mean, "median": _median}
_WEIGHTED = frozenset({"logmean", "mean"})


def names() -> list[str]:
    """The registered aggregation names, as ensemble files use them."""
    return sorted(_AGGREGATIONS)


def weighted(name: str) -> bool:
    """True when aggregation ``name`` accepts weights."""
    return name in _WEIGHTED


def get_aggregation(name: str) -> Aggregation:
    """The aggregation called ``name``; InputError with a did-you-mean otherwise."""
    if name not in _AGGREGATIONS:
        raise InputError(f"unknown aggregation {name!r}; valid: {', '.join(names())}."
                         f"{did_you_mean(name, _AGGREGATIONS)}")
    return _AGGREGATIONS[name]


# --- alignment -------------------------------------------------------------------------------


def _keys(forecast: Forecast) -> tuple[Ints, Ints, Ints, Ints]:
    frame = forecast.frame
    origin, step, month = (frame[c].to_numpy(dtype=np.int64) for c in INDEX_COLUMNS)
    return origin, step, month, frame[forecast.unit_column].to_numpy(dtype=np.int64)


def _same_rows(a: Forecast, b: Forecast) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_keys(a), _keys(b), strict=True))


def _codes(keys: Sequence[Ints], lows: Sequence[int], widths: Sequence[int]) -> Ints:
    code = np.zeros(len(keys[0]), dtype=np.int64)
    for k, lo, w in zip(keys, lows, widths, strict=True):
        code = code * w + (k - lo)
    return code


def _listing(values: Ints, what: str) -> str:
    uniq = np.unique(values)
    short = reprlib.Repr()
    short.maxlist = 8
    shown = short.repr(uniq.tolist())
    return f"{what} {shown} ({len(uniq):,})"


def align_members(members: Mapping[str, Forecast]) -> dict[str, Forecast]:
    """The members with rows in the first member's order, after checking they cover the same
    (origin, step, month_id, unit) rows.

    Raises:
        InputError: no members, members of different unit columns, a member with duplicated
            rows, or members covering different rows (naming who lacks which months and units).
    """
    if not members:
        raise InputError("an ensemble needs at least one member forecast")
    items = list(members.items())
    first_name, first = items[0]
    units = {fc.unit_column for _, fc in items}
    if len(units) != 1:
        raise InputError(f"ensemble members mix levels (unit columns {sorted(units)}); members "
                         "must all be cm or all pgm")
    if all(len(fc) == len(first) and _same_rows(fc, first) for _, fc in items[1:]):
        return dict(items)

    all_keys = [_keys(fc) for _, fc in items]
    lows = [min(int(k[i].min()) for k in all_keys if len(k[i])) for i in (0, 1, 3)]
    highs = [max(int(k[i].max()) for k in all_keys if len(k[i])) for i in (0, 1, 3)]
    widths = [h - lo + 1 for lo, h in zip(lows, highs, strict=True)]
    codes = []
    for (name, fc), k in zip(items, all_keys, strict=True):
        bad = k[2] != k[0] + k[1]
        if bad.any():
            raise InputError(f"member {name!r}: {int(bad.sum()):,} rows have month_id != "
                             "origin + step")
        code = _codes((k[0], k[1], k[3]), lows, widths)
        if len(np.unique(code)) != len(code):
            raise InputError(f"member {name!r} has duplicated (origin, step, {fc.unit_column}) "
                             "rows; each row must appear once")
        codes.append(code)
    union = np.unique(np.concatenate(codes))
    problems = []
    for (name, fc), code in zip(items, codes, strict=True):
        missing = np.setdiff1d(union, code, assume_unique=True)
        if len(missing):
            step_unit = widths[1] * widths[2]
            origin = missing // step_unit + lows[0]
            step = missing // widths[2] % widths[1] + lows[1]
            unit = missing % widths[2] + lows[2]
            problems.append(
                f"member {name!r} lacks {len(missing):,} rows the other members have: "
                f"{_listing(origin + step, 'months')}, {_listing(unit, fc.unit_column + 's')}"
            )
    if problems:
        raise InputError(
            "ensemble members do not cover the same rows:\n  " + "\n  ".join(problems)
            + "\n  Members must forecast the same origins, steps and units: run them on the "
            "same snapshot and partition."
        )
    order0 = np.argsort(codes[0], kind="stable")
    aligned = {first_name: first}
    for (name, fc), code in zip(items[1:], codes[1:], strict=True):
        # position of each first-member row in this member: sort both, match, undo
        take = np.empty(len(code), dtype=np.int64)
        take[order0] = np.argsort(code, kind="stable")
        aligned[name] = Forecast(
            frame=first.frame.copy(), point=fc.point[take], samples=fc.samples[take],
            unit_column=fc.unit_column,
        )
    return aligned


# --- pooling ---------------------------------------------------------------------------------


def _allocation(weights: Floats, n_samples: int) -> Ints:
    """Draws per member: round(w * S) by largest remainder, adding up to exactly S."""
    raw = weights * n_samples
    counts = np.floor(raw).astype(np.int64)
    short = n_samples - int(counts.sum())
    if short > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def pool_samples(
    samples: Sequence[Floats], weights: Floats, n_samples: int, *, seed: int = 0
) -> Floats:
    """Pool members' draws into ``n_samples`` draws per row.

    Member m gives ``round(w_m * n_samples)`` draws (largest remainder), chosen per row at
    random without replacement (with replacement only when it must give more draws than it
    has). Deterministic for a given seed.

    Args:
        samples: one (rows, S_m) array per member, rows aligned.
        weights: one non-negative weight per member, summing to 1.
        n_samples: draws per row of the result.
        seed: seed of the random choice.

    Returns:
        (rows, n_samples) array.
    """
    rng = np.random.default_rng(seed)
    counts = _allocation(np.asarray(weights, dtype=np.float64), n_samples)
    n = samples[0].shape[0]
    out = np.empty((n, n_samples), dtype=np.float64)
    col = 0
    for draws, k in zip(samples, counts, strict=True):
        k = int(k)
        if k == 0:
            continue
        s_m = draws.shape[1]
        for lo in range(0, n, _POOL_BLOCK):
            hi = min(lo + _POOL_BLOCK, n)
            if k <= s_m:
                pick = np.argpartition(rng.random((hi - lo, s_m)), k - 1, axis=1)[:, :k] \
                    if k < s_m else np.broadcast_to(np.arange(s_m), (hi - lo, s_m))
            else:
                pick = rng.integers(0, s_m, size=(hi - lo, k))
            out[lo:hi, col:col + k] = np.take_along_axis(draws[lo:hi], pick, axis=1)
        col += k
    return out


# --- the ensemble ----------------------------------------------------------------------------


def _weights(names_: Sequence[str], weights: Mapping[str, float] | None) -> Floats | None:
    if weights is None:
        return None
    missing = [n for n in names_ if n not in weights]
    extra = [n for n in weights if n not in names_]
    if missing or extra:
        raise InputError(f"weights must name every member once: missing {missing}, not "
                         f"members {extra}")
    w = np.array([float(weights[n]) for n in names_], dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    return w / w.sum()


def aggregate(
    members: Mapping[str, Forecast],
    *,
    method: str = "mean",
    weights: Mapping[str, float] | None = None,
    samples: SampleOption = "none",
    seed: int = 0,
) -> Forecast:
    """Combine member forecasts row by row.

    Args:
        members: member name -> forecast (raw counts), all of one level.
        method: a registered aggregation (``names()``): "mean" (default), "logmean" or
            "median".
        weights: member -> weight for a weighted mean and weighted pooling; normalised to
            sum to 1. None: equal weights.
        samples: "none" (default): the ensemble is a point forecast (one sample = the point);
            "pool": members' draws are pooled into S draws per row, S = the largest member
            sample count, every member must have samples.
        seed: seed of the pooling draw (default 0).

    Returns:
        The ensemble forecast, rows in the first member's order.

    Raises:
        InputError: unknown aggregation or sample option, weights that do not match the
            members or the aggregation, members covering different rows, pooling a member
            without samples.
    """
    fn = get_aggregation(method)
    if samples not in SAMPLE_OPTIONS:
        raise InputError(f"samples must be one of {', '.join(SAMPLE_OPTIONS)}, got {samples!r}")
    aligned = align_members(members)
    names_ = list(aligned)
    w = _weights(names_, weights)
    if w is not None and not weighted(method):
        raise InputError(f"aggregation {method!r} takes no weights; use 'mean' or 'logmean' "
                         "for a weighted combination")
    first = aligned[names_[0]]
    point = fn(np.stack([aligned[n].point for n in names_]), w)
    if samples == "none":
        draws = point[:, None]
    else:
        single = [n for n in names_ if aligned[n].n_samples < 2]
        if single:
            raise InputError(
                f"samples = 'pool' needs sample forecasts from every member, but "
                f"{', '.join(map(repr, single))} give one value per row; give them "
                "n_samples > 1 in their hyperparameters or set samples = 'none'"
            )
        n_samples = max(aligned[n].n_samples for n in names_)
        draws = pool_samples(
            [aligned[n].samples for n in names_],
            w if w is not None else np.full(len(names_), 1.0 / len(names_)),
            n_samples, seed=seed,
        )
    return Forecast(frame=first.frame.copy(), point=np.ascontiguousarray(point),
                    samples=np.ascontiguousarray(draws), unit_column=first.unit_column)

