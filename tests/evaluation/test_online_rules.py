"""The pure parts of online evaluation and output drift: pending rows, shared rows, cell
scores, the band and the alert rule, and the measurement of a forecast's change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import InputError
from ewspipe.evaluation.online import (
    assess,
    band,
    cell_scores,
    common_rows,
    pair_scores,
    split_pending,
    subset,
    window_score,
)
from ewspipe.evaluation.output_drift import measure_change
from ewspipe.evaluation.schemes import Scored, evaluate, join_actuals
from ewspipe.models.forecast import Forecast


def _forecast(origins, steps, units, value) -> Forecast:
    rows = [(o, s, o + s, u) for o in origins for s in steps for u in units]
    frame = pd.DataFrame(rows, columns=["origin", "step", "month_id", "country_id"])
    point = np.array([value(o, s, u) for o, s, _, u in rows], dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=point[:, None].copy(),
                    unit_column="country_id")


def _actuals(months, units, value=1.0) -> pd.DataFrame:
    rows = [(m, u, value) for m in months for u in units]
    return pd.DataFrame(rows, columns=["month_id", "country_id", "value"])


def test_split_pending_counts_the_months_after_the_actuals():
    fc = _forecast([10, 11], [1, 2, 3], [1, 2], lambda o, s, u: 1.0)
    due, pending = split_pending(fc, 12)
    assert due is not None and set(due.frame["month_id"]) == {11, 12}
    assert pending.rows == 6 and pending.months == (13, 14)
    nothing, all_pending = split_pending(fc, 10)
    assert nothing is None and all_pending.rows == len(fc)


def test_common_rows_and_pair_scores():
    a = join_actuals(_forecast([10], [1, 2], [1, 2, 3], lambda o, s, u: 2.0),
                     _actuals(range(11, 13), [1, 2, 3]))
    b = join_actuals(_forecast([10], [1, 2], [2, 3, 4], lambda o, s, u: 1.0),
                     _actuals(range(11, 13), [2, 3, 4]))
    ma, mb = common_rows(a, b)
    assert ma.sum() == mb.sum() == 4
    va, vb, n = pair_scores(a, b, "mae")
    assert n == 4 and va == 1.0 and vb == 0.0
    assert pair_scores(a, b, "mae", months=[99]) == (None, None, 0)


def test_row_keys_refuse_negative_units():
    s = join_actuals(_forecast([10], [1], [-1], lambda o, s, u: 1.0), _actuals([11], [-1]))
    with pytest.raises(InputError, match="unit ids"):
        common_rows(s, s)


def test_cell_scores_equal_evaluate_per_origin():
    rng = np.random.default_rng(3)
    fc = _forecast([10, 11, 12], [1, 2, 3], range(1, 9), lambda o, s, u: rng.gamma(1.0, 3.0))
    acts = _actuals(range(11, 16), range(1, 9))
    acts["value"] = rng.poisson(2.0, len(acts)).astype(float)
    scored = join_actuals(fc, acts)
    cells = cell_scores(scored, ["msle", "mse", "pearson"])
    for origin in (10, 11, 12):
        ref = evaluate(subset(scored, scored.origin == origin), ["msle", "mse", "pearson"],
                       schemes=("step",)).groups["step"]
        got = cells[cells["origin"] == origin]
        for metric in ("msle", "mse", "pearson"):
            r = ref[ref["metric"] == metric]
            g = got[got["metric"] == metric]
            assert g["step"].tolist() == r["group"].tolist()
            np.testing.assert_array_equal(g["value"].to_numpy(np.float64, na_value=np.nan),
                                          r["value"].to_numpy(np.float64, na_value=np.nan))


def test_band_needs_enough_windows():
    assert not band([1.0, 2.0], 2.0, 3).measured
    b = band([1.0, 2.0, 3.0], 2.0, 3)
    assert b.measured and b.mean == 2.0 and b.sd == 1.0 and b.upper == 4.0


def _scored(months_bad: set[int], bad: float, base: float = 1.0) -> Scored:
    """Origins 100..109, step 1, units 1..5, actuals 1: ``base`` except ``bad`` in
    ``months_bad``."""
    fc = _forecast(list(range(100, 110)), [1], range(1, 6),
                   lambda o, s, u: bad if o + s in months_bad else base)
    return join_actuals(fc, _actuals(range(101, 111), range(1, 6)))


def test_assess_fires_both_rules_on_a_recent_failure():
    model = _scored({109, 110}, 20.0)
    base = _scored(set(), 0.0)
    a = assess("m", model, {"zero": base}, metric="msle", window_months=2, band_min_windows=6)
    assert a.window == (109, 110)
    assert a.score == window_score(model, "msle", [109, 110])[0]
    assert a.worse_than_baseline and a.best_baseline == "zero"
    # earlier 2-month windows end before 109: months 101..108 -> 7 windows, all perfect
    assert a.band.windows == 7 and a.band.upper == 0.0 and a.beyond_band


def test_assess_is_quiet_when_good_and_without_enough_history():
    good = _scored(set(), 0.0, base=1.0)
    worse = _scored(set(), 0.0, base=5.0)
    a = assess("m", good, {"b": worse}, metric="msle", window_months=2, band_min_windows=6)
    assert not a.worse_than_baseline and not a.beyond_band and a.band.measured
    short = assess("m", good, {}, metric="msle", window_months=5, band_min_windows=6)
    assert not short.band.measured and "no baseline" in short.notes[0]
    model, base = _scored(set(), 0.0, base=2.0), _scored(set(), 0.0, base=1.5)  # MAE 1 vs 0.5
    strict = assess("m", model, {"b": base}, metric="mae", window_months=2)
    assert strict.worse_than_baseline
    assert (strict.baselines[0].model_score, strict.baselines[0].baseline_score) == (1.0, 0.5)
    tolerant = assess("m", model, {"b": base}, metric="mae", window_months=2, tolerance=1.5)
    assert not tolerant.worse_than_baseline  # 1.0 <= 0.5 * (1 + 1.5)


def test_measure_change_on_shared_rows():
    old = _forecast([10], [1, 2, 3], [1, 2, 3], lambda o, s, u: 1.0 if u != 3 else 0.0)
    new = _forecast([11], [1, 2, 3], [1, 2, 4], lambda o, s, u: 3.0 if u == 1 else 1.0)
    c = measure_change(new, old, nonzero_threshold=0.5)
    assert c.months == (12, 13) and c.rows == 4  # months 12, 13 x units 1, 2
    assert (c.units_shared, c.units_added, c.units_dropped) == (2, 1, 1)
    assert c.total_old == 4.0 and c.total_new == 8.0 and c.total_ratio == 2.0
    assert c.nonzero_share_new == c.nonzero_share_old == 1.0
    top = c.jumps[0]
    assert top.unit == 1 and top.jump == pytest.approx(np.log(4) - np.log(2))
    assert c.to_dict()["top_jumps"][0]["unit"] == 1
    zero = _forecast([10], [1, 2], [1], lambda o, s, u: 0.0)
    some = _forecast([11], [1, 2], [1], lambda o, s, u: 5.0)
    assert measure_change(some, zero).total_ratio == float("inf")
    assert measure_change(zero, zero).total_ratio is None
