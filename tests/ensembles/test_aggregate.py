"""Aggregation of member forecasts: mean, weighted mean, logmean, median, sample pooling,
alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ewspipe.ensembles.aggregate import (
    aggregate,
    align_members,
    get_aggregation,
    names,
    pool_samples,
)
from ewspipe.errors import InputError
from ewspipe.models.forecast import Forecast


def _forecast(values, *, origins=(10,), steps=(1, 2), units=(1, 2, 3), samples=None,
              unit_column="country_id") -> Forecast:
    o, s, u = np.meshgrid(origins, steps, units, indexing="ij")
    frame = pd.DataFrame({"origin": o.ravel(), "step": s.ravel(),
                          "month_id": (o + s).ravel(), unit_column: u.ravel()})
    point = np.asarray(values, dtype=np.float64)
    draws = point[:, None] if samples is None else np.asarray(samples, dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=draws, unit_column=unit_column)


A = _forecast([1, 2, 3, 4, 5, 6])
B = _forecast([3, 2, 1, 0, 5, 12])
C = _forecast([2, 8, 2, 8, 2, 8])


def test_registry_names_and_did_you_mean() -> None:
    assert names() == ["logmean", "mean", "median"]
    with pytest.raises(InputError, match=r"unknown aggregation 'meen'.*Did you mean 'mean'"):
        get_aggregation("meen")


def test_mean_median_and_weighted_mean() -> None:
    mean = aggregate({"a": A, "b": B})
    np.testing.assert_allclose(mean.point, [2, 2, 2, 2, 5, 9])
    assert mean.n_samples == 1 and np.array_equal(mean.samples[:, 0], mean.point)
    median = aggregate({"a": A, "b": B, "c": C}, method="median")
    np.testing.assert_allclose(median.point, [2, 2, 2, 4, 5, 8])
    weighted = aggregate({"a": A, "b": B}, weights={"a": 3, "b": 1})
    np.testing.assert_allclose(weighted.point, 0.75 * A.point + 0.25 * B.point)
    assert list(weighted.frame.columns) == ["origin", "step", "month_id", "country_id"]


def test_logmean_averages_log1p_points_weighted_or_not() -> None:
    logmean = aggregate({"a": A, "b": B}, method="logmean")
    expected = np.expm1((np.log1p(A.point) + np.log1p(B.point)) / 2)
    np.testing.assert_allclose(logmean.point, expected)
    assert (logmean.point <= aggregate({"a": A, "b": B}).point + 1e-12).all()  # Jensen
    np.testing.assert_allclose(logmean.point[[1, 4]], [2, 5])  # equal members: that value
    weighted = aggregate({"a": A, "b": B}, method="logmean", weights={"a": 3, "b": 1})
    np.testing.assert_allclose(weighted.point,
                               np.expm1(0.75 * np.log1p(A.point) + 0.25 * np.log1p(B.point)))
    # a negative member point (clipped later by post-processing) counts as 0, never NaN
    neg = _forecast([-2, 2, 3, 4, 5, 6])
    assert aggregate({"n": neg, "b": B}, method="logmean").point[0] == pytest.approx(1.0)


def test_logmean_pooling_keeps_the_draws_and_combines_the_points() -> None:
    sa = np.tile([[1.0, 2.0, 3.0, 4.0]], (6, 1))
    sb = np.tile([[100.0, 200.0, 300.0, 400.0]], (6, 1))
    a, b = _forecast(np.full(6, 2.5), samples=sa), _forecast(np.full(6, 250.0), samples=sb)
    mean = aggregate({"a": a, "b": b}, samples="pool", seed=1)
    log = aggregate({"a": a, "b": b}, method="logmean", samples="pool", seed=1)
    np.testing.assert_array_equal(log.samples, mean.samples)  # the draws do not change
    np.testing.assert_allclose(log.point, np.expm1((np.log1p(2.5) + np.log1p(250)) / 2))


def test_rows_are_matched_by_key_not_position() -> None:
    shuffled = B.frame.sample(frac=1.0, random_state=3)
    order = shuffled.index.to_numpy()
    b2 = Forecast(frame=shuffled.reset_index(drop=True), point=B.point[order],
                  samples=B.samples[order], unit_column="country_id")
    np.testing.assert_allclose(aggregate({"a": A, "b": b2}).point, [2, 2, 2, 2, 5, 9])


def test_weights_must_match_members_and_aggregation() -> None:
    with pytest.raises(InputError, match=r"missing \['b'\]"):
        aggregate({"a": A, "b": B}, weights={"a": 1})
    with pytest.raises(InputError, match="'median' takes no weights"):
        aggregate({"a": A, "b": B}, method="median", weights={"a": 1, "b": 1})


def test_members_covering_different_rows_name_the_gap() -> None:
    short = _forecast([1, 2, 3, 4], units=(1, 2))
    later = _forecast([1, 2, 3, 4, 5, 6], origins=(11,))
    with pytest.raises(InputError) as exc:
        aggregate({"a": A, "short": short})
    msg = str(exc.value)
    assert "member 'short' lacks 2 rows the other members have" in msg
    assert "months [11, 12] (2)" in msg and "country_ids [3] (1)" in msg
    with pytest.raises(InputError, match=r"member 'later' lacks 6 rows.*months \[11, 12\]"):
        align_members({"a": A, "later": later})


def test_pooling_keeps_s_draws_in_weighted_shares() -> None:
    n, s = 6, 100
    sa = np.full((n, s), 1.0) + np.arange(s) / 1000  # member a draws are ~1
    sb = np.full((n, s), 50.0) + np.arange(s) / 1000  # member b draws are ~50
    a = _forecast(sa.mean(axis=1), samples=sa)
    b = _forecast(sb.mean(axis=1), samples=sb)
    pooled = aggregate({"a": a, "b": b}, weights={"a": 3, "b": 1}, samples="pool", seed=4)
    assert pooled.samples.shape == (n, s)
    assert ((pooled.samples < 10).sum(axis=1) == 75).all()
    # draws are taken without replacement: no draw of a member repeats within a row
    assert all(len(np.unique(row)) == s for row in pooled.samples)
    np.testing.assert_allclose(pooled.point, 0.75 * a.point + 0.25 * b.point)
    again = aggregate({"a": a, "b": b}, weights={"a": 3, "b": 1}, samples="pool", seed=4)
    np.testing.assert_array_equal(again.samples, pooled.samples)


def test_pool_samples_uneven_counts_and_allocation() -> None:
    rng = np.random.default_rng(0)
    few = rng.random((5, 3))
    many = rng.random((5, 40)) + 10
    out = pool_samples([few, many], np.array([0.5, 0.5]), 20, seed=1)
    assert out.shape == (5, 20)
    assert ((out < 10).sum(axis=1) == 10).all()  # 10 draws from 3: with replacement
    assert np.isin(out[out < 10], few).all()


def test_pooling_needs_samples_from_every_member() -> None:
    s = _forecast(A.point, samples=np.tile(A.point[:, None], (1, 10)))
    with pytest.raises(InputError, match="'b' give one value per row"):
        aggregate({"a": s, "b": B}, samples="pool")
