"""Joining forecasts with actuals, and step-, month-, sequence-wise and pooled scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from ewspipe.errors import InputError
from ewspipe.evaluation import Scored, evaluate, get_metric, join_actuals
from ewspipe.models.forecast import Forecast

UNIT = "country_id"


def make_forecast(
    origins, steps, units, point=None, samples=None, rng=None
) -> Forecast:
    """One row per (origin, step, unit), sorted as Forecast requires."""
    grid = pd.MultiIndex.from_product([origins, steps, units], names=["origin", "step", UNIT])
    frame = grid.to_frame(index=False)
    frame.insert(2, "month_id", frame["origin"] + frame["step"])
    frame = frame.astype("int64")
    n = len(frame)
    rng = rng or np.random.default_rng(0)
    if samples is None:
        samples = rng.poisson(3.0, size=(n, 4)).astype(float)
    if point is None:
        point = samples.mean(axis=1)
    return Forecast(frame=frame, point=np.asarray(point, float),
                    samples=np.asarray(samples, float), unit_column=UNIT)


def actuals_for(forecast: Forecast, values, keep=None) -> pd.DataFrame:
    frame = forecast.frame
    table = pd.DataFrame({"month_id": frame["month_id"], UNIT: frame[UNIT],
                          "value": np.asarray(values, float)})
    table = table.drop_duplicates(["month_id", UNIT])
    return table if keep is None else table[keep(table)]


# --- join ------------------------------------------------------------------------------------


def test_join_aligns_actuals_and_counts_rows_without_one():
    fc = make_forecast([10, 11], [1, 2, 3], [1, 2])
    months = np.arange(5, 20)
    actuals = pd.DataFrame({
        "month_id": np.repeat(months, 2),
        UNIT: np.tile([2, 1], len(months)),  # unsorted on purpose
        "value": np.repeat(months, 2) * 10.0 + np.tile([2, 1], len(months)),
    })
    actuals = actuals[actuals["month_id"] <= 13]  # the data end before the window does
    scored = join_actuals(fc, actuals)
    assert len(scored) + scored.n_unscored == len(fc)
    assert scored.n_unscored == 2  # month 14 = origin 11 + step 3, both units
    assert scored.unscored_months == (14,)
    np.testing.assert_array_equal(scored.actual, scored.month_id * 10.0 + scored.unit)
    assert np.all(scored.month_id == scored.origin + scored.step)


def test_join_keeps_point_and_samples_aligned():
    rng = np.random.default_rng(3)
    fc = make_forecast([5], [1, 2], [7, 8, 9], rng=rng)
    actuals = actuals_for(fc, np.arange(len(fc)), keep=lambda t: t[UNIT] != 8)
    scored = join_actuals(fc, actuals)
    kept = (fc.frame[UNIT] != 8).to_numpy()
    np.testing.assert_array_equal(scored.point, fc.point[kept])
    np.testing.assert_array_equal(scored.samples, fc.samples[kept])
    np.testing.assert_array_equal(scored.actual, np.arange(len(fc))[kept])


def test_join_missing_column():
    fc = make_forecast([1], [1], [1])
    with pytest.raises(InputError, match=r"actuals: missing column\(s\) value; expected "
                                         r"month_id, country_id, value; got month_id, country_id"):
        join_actuals(fc, pd.DataFrame({"month_id": [2], UNIT: [1]}))


def test_join_other_value_column():
    fc = make_forecast([1], [1], [1], point=[2.0], samples=[[2.0]])
    scored = join_actuals(fc, pd.DataFrame({"month_id": [2], UNIT: [1], "ged_sb": [5]}),
                          value_column="ged_sb")
    assert scored.actual.tolist() == [5.0]


def test_join_duplicated_actuals():
    fc = make_forecast([1], [1], [1, 2])
    actuals = pd.DataFrame({"month_id": [2, 2, 2], UNIT: [2, 1, 2], "value": [1, 2, 3]})
    with pytest.raises(InputError, match=r"1 duplicated \(month_id, country_id\) rows \(e\.g\. "
                                         r"month_id=2, country_id=2\)"):
        join_actuals(fc, actuals)


@pytest.mark.parametrize(("value", "message"), [
    (np.nan, r"'value' has NaN in 1 rows \(e\.g\. month_id=2, country_id=1\); drop rows"),
    (-3.0, r"'value' has negative values in 1 rows"),
])
def test_join_invalid_actual_values(value, message):
    fc = make_forecast([1], [1], [1])
    with pytest.raises(InputError, match=message):
        join_actuals(fc, pd.DataFrame({"month_id": [2], UNIT: [1], "value": [value]}))


def test_join_ignores_invalid_actuals_outside_the_window():
    fc = make_forecast([1], [1], [1], point=[1.0], samples=[[1.0]])
    actuals = pd.DataFrame({"month_id": [2, 50], UNIT: [1, 1], "value": [4.0, np.nan]})
    assert join_actuals(fc, actuals).actual.tolist() == [4.0]


def test_join_refuses_inconsistent_months():
    fc = make_forecast([1], [1, 2], [1])
    frame = fc.frame.copy()
    frame.loc[1, "month_id"] = 9
    bad = Forecast(frame=frame, point=fc.point, samples=fc.samples, unit_column=UNIT)
    with pytest.raises(InputError, match=r"1 rows have step < 1 or month_id != origin \+ step "
                                         r"\(e\.g\. origin=1, step=2, month_id=9\)"):
        join_actuals(bad, actuals_for(fc, [0, 0]))


def test_join_refuses_float_keys():
    fc = make_forecast([1], [1], [1])
    with pytest.raises(InputError, match="actuals: column 'month_id' must hold integers"):
        join_actuals(fc, pd.DataFrame({"month_id": [2.0], UNIT: [1], "value": [0]}))


# --- evaluate: reference on random forecasts -------------------------------------------------

ALL = ["mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar",
       "crps", "twcrps", "mis", "coverage", "brier", "ap", "roc_auc"]


def _crps(y, samples):
    s = samples.shape[1]
    pair = np.abs(samples[:, :, None] - samples[:, None, :]).sum(axis=(1, 2)) / (2 * s * s)
    return np.abs(samples - y[:, None]).mean(axis=1) - pair


def reference(name: str, y: np.ndarray, x: np.ndarray, samples: np.ndarray) -> float | None:
    """Each metric straight from its definition on one group's rows; None when undefined."""
    low = np.quantile(samples, 0.025, axis=1)
    high = np.quantile(samples, 0.975, axis=1)
    p = (samples > 0).mean(axis=1)
    event = y > 0
    if name == "mse":
        return np.mean((y - x) ** 2)
    if name == "msle":
        return np.mean((np.log1p(y) - np.log1p(x)) ** 2)
    if name == "rmsle":
        return math.sqrt(np.mean((np.log1p(y) - np.log1p(x)) ** 2))
    if name == "mae":
        return np.mean(np.abs(y - x))
    if name == "pearson":
        if len(y) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return None
        return np.corrcoef(x, y)[0, 1]
    if name == "mcr":
        return None if y.sum() == 0 else x.mean() / y.mean()
    if name == "y_hat_bar":
        return x.mean()
    if name == "crps":
        return _crps(y, samples).mean()
    if name == "twcrps":
        return _crps(np.maximum(y, 25.0), np.maximum(samples, 25.0)).mean()
    if name == "mis":
        return np.mean((high - low) + 40 * (low - y) * (y < low) + 40 * (y - high) * (y > high))
    if name == "coverage":
        return np.mean((low <= y) & (y <= high))
    if name == "brier":
        return np.mean((p - event) ** 2)
    if name == "ap":
        return None if not event.any() else average_precision_score(event, p)
    if name == "roc_auc":
        return None if event.all() or not event.any() else roc_auc_score(event, p)
    raise AssertionError(name)


KEYS = {"step": "step", "month": "month_id", "sequence": "origin"}


@st.composite
def forecast_case(draw):
    first = draw(st.integers(100, 500))
    origins = list(range(first, first + draw(st.integers(1, 3))))
    steps = list(range(1, draw(st.integers(1, 4)) + 1))
    units = sorted(draw(st.sets(st.integers(1, 300), min_size=1, max_size=4)))
    n = len(origins) * len(steps) * len(units)
    s = draw(st.integers(1, 5))
    big = draw(st.booleans())  # sometimes values above the twCRPS threshold
    top = 60 if big else 4
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, top, size=(n, s)).astype(float)
    point = samples.mean(axis=1) if draw(st.booleans()) else rng.integers(0, top, n) * 1.0
    fc = make_forecast(origins, steps, units, point=point, samples=samples)
    values = rng.integers(0, top, n) * (rng.random(n) < 0.6)
    drop = rng.random(n) < 0.15
    actuals = actuals_for(fc, values)
    actuals = actuals[~drop[: len(actuals)]] if len(actuals) == n else actuals
    return fc, actuals


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forecast_case())
def test_every_scheme_matches_a_pandas_groupby_reference(case):
    fc, actuals = case
    scored = join_actuals(fc, actuals)
    if len(scored) == 0:
        with pytest.raises(InputError, match="nothing to score"):
            evaluate(scored, ALL)
        return
    result = evaluate(scored, ALL)
    df = pd.DataFrame({"origin": scored.origin, "step": scored.step,
                       "month_id": scored.month_id})
    for metric in ALL:
        want = reference(metric, scored.actual, scored.point, scored.samples)
        _same(result.pooled[metric], want, f"{metric} pooled")
    for scheme, key in KEYS.items():
        table = result.groups[scheme]
        rows_of = {(r.group, r.metric): r for r in table.itertuples(index=False)}
        groups = df.groupby(key).indices
        assert len(rows_of) == len(groups) * len(ALL)
        for group, rows in groups.items():
            for metric in ALL:
                got = rows_of[(group, metric)]
                assert got.n == len(rows)
                want = reference(metric, scored.actual[rows], scored.point[rows],
                                 scored.samples[rows])
                value = None if pd.isna(got.value) else got.value
                _same(value, want, f"{metric} {scheme} {group}")
                assert bool(got.reason) == (want is None)
        for metric in ALL:
            values = table.loc[table["metric"] == metric, "value"]
            expected_mean = None if values.isna().any() else float(values.mean())
            _same(result.means[scheme][metric], expected_mean, f"{metric} {scheme} mean")


def _same(got: float | None, want: float | None, what: str) -> None:
    if want is None:
        assert got is None, f"{what}: expected undefined, got {got}"
    else:
        assert got is not None, f"{what}: undefined, expected {want}"
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), what


# --- evaluate: behaviour ---------------------------------------------------------------------


def test_groups_are_steps_months_and_origins():
    fc = make_forecast([10, 11, 12], [1, 2], [1, 2, 3])
    scored = join_actuals(fc, actuals_for(fc, np.arange(len(fc)) % 4))
    result = evaluate(scored, ["mse"])
    assert result.groups["step"]["group"].tolist() == [1, 2]
    assert result.groups["month"]["group"].tolist() == [11, 12, 13, 14]
    assert result.groups["month"]["n"].tolist() == [3, 6, 6, 3]
    assert result.groups["sequence"]["group"].tolist() == [10, 11, 12]
    assert list(result.groups["step"].columns) == ["scheme", "group", "metric", "value", "n",
                                                   "reason"]
    assert len(result.frame()) == 2 + 4 + 3


def test_undefined_values_carry_a_reason_and_serialise_as_null():
    # every actual of sequence 10 is zero: MCR has no value there, and so its sequence mean
    fc = make_forecast([10, 11], [1, 2], [1, 2])
    values = np.where(fc.frame["origin"] == 10, 0.0, 5.0)
    values[fc.frame["month_id"].to_numpy() == 12] = 0.0  # month 12 in both origins: all zero
    result = evaluate(join_actuals(fc, actuals_for(fc, values)), ["mcr", "mse"])
    seq = result.groups["sequence"]
    row = seq[(seq["group"] == 10) & (seq["metric"] == "mcr")]
    assert row["value"].isna().item()
    assert row["reason"].item() == "every actual is 0, so mean(x) / mean(y) has no value"
    assert result.means["sequence"]["mcr"] is None
    assert result.means["sequence"]["mse"] is not None
    assert any(n.startswith("mcr, sequence-wise mean: undefined, 1 of 2 groups")
               for n in result.notes)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["means"]["sequence"]["mcr"] is None
    mcr10 = [g for g in doc["groups"]["sequence"] if g["metric"] == "mcr" and g["group"] == 10]
    assert mcr10[0]["value"] is None and mcr10[0]["reason"].startswith("every actual is 0")
    assert doc["n_scored"] == len(fc)


def test_pearson_constant_float_predictions_are_undefined_in_every_group():
    # 0.1 is inexact in binary; combining cells must still see exactly zero variance
    fc = make_forecast(list(range(20, 33)), list(range(1, 37)), [1, 2, 3],
                       point=np.full(13 * 36 * 3, 0.1))
    rng = np.random.default_rng(1)
    result = evaluate(join_actuals(fc, actuals_for(fc, rng.poisson(2.0, len(fc)))),
                      ["pearson"])
    assert result.pooled["pearson"] is None
    for table in result.groups.values():
        assert table["value"].isna().all()
        assert table["reason"].str.contains("predictions (?:and actuals )?are (?:both )?constant",
                                            regex=True).all()


def test_pearson_of_groups_made_of_constant_cells():
    # each (origin, step) cell is constant but cells differ: a step group has variance
    fc = make_forecast([1, 2], [1], [1, 2, 3], point=[1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    result = evaluate(join_actuals(fc, actuals_for(fc, [0, 1, 2, 3, 5, 4])), ["pearson"])
    step = result.groups["step"]
    x, y = np.array([1.0, 1, 1, 2, 2, 2]), np.array([0.0, 1, 2, 3, 5, 4])
    assert step["value"].item() == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert result.groups["sequence"]["value"].isna().all()


def test_point_source_sample_mean():
    rng = np.random.default_rng(5)
    samples = rng.poisson(2.0, size=(12, 6)).astype(float)
    fc = make_forecast([3, 4], [1, 2, 3], [1, 2], point=np.zeros(12), samples=samples)
    scored = join_actuals(fc, actuals_for(fc, rng.poisson(2.0, 12)))
    by_point = evaluate(scored, ["mse"])
    by_mean = evaluate(scored, ["mse"], point_source="sample_mean")
    assert by_point.pooled["mse"] == pytest.approx(np.mean(scored.actual ** 2))
    assert by_mean.pooled["mse"] == pytest.approx(
        np.mean((scored.actual - samples.mean(axis=1)) ** 2))
    assert by_mean.point_source == "sample_mean"


def test_metric_objects_with_parameters_and_scheme_subset():
    fc = make_forecast([3], [1, 2], [1, 2])
    scored = join_actuals(fc, actuals_for(fc, [0, 1, 2, 3]))
    result = evaluate(scored, ["mis", get_metric("mis", alpha=0.5)], schemes=["step"])
    assert set(result.groups) == {"step"}
    assert set(result.pooled) == {"mis", "mis(alpha=0.5)"}


def test_nan_prediction_names_metrics_and_rows():
    fc = make_forecast([3], [1, 2], [1, 2], point=[0.0, np.nan, 1.0, np.nan])
    scored = join_actuals(fc, actuals_for(fc, [0, 1, 2, 3]))
    with pytest.raises(InputError, match=r"^mse, msle: 2 of 4 rows have a NaN or infinite point "
                                         r"prediction \(first at row 1\)"):
        evaluate(scored, ["mse", "msle", "crps"])


def test_nan_sample_names_the_sample_metrics():
    samples = np.ones((4, 3))
    samples[2, 1] = np.nan
    fc = make_forecast([3], [1, 2], [1, 2], samples=samples, point=np.ones(4))
    scored = join_actuals(fc, actuals_for(fc, [0, 1, 2, 3]))
    with pytest.raises(InputError, match=r"^crps, mis: 1 of 4 rows have a NaN or infinite sample"):
        evaluate(scored, ["mse", "crps", "mis"])


def test_nothing_to_score():
    fc = make_forecast([3], [1, 2], [1])
    scored = join_actuals(fc, pd.DataFrame({"month_id": [1], UNIT: [1], "value": [0]}))
    assert scored.n_unscored == 2
    with pytest.raises(InputError, match=r"nothing to score: none of the 2 forecast rows has an "
                                         r"actual \(target months without actuals: 4\.\.5"):
        evaluate(scored, ["mse"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"metrics": []}, "no metrics asked; choose from ap, brier"),
    ({"metrics": ["mse", "mse"]}, "metric.s. asked twice: mse"),
    ({"metrics": ["rmse"]}, "'rmse' is not a metric"),
    ({"metrics": ["mse"], "schemes": ["daily"]}, "unknown scheme"),
    ({"metrics": ["mse"], "point_source": "median"}, "point_source must be"),
])
def test_bad_requests(kwargs, message):
    fc = make_forecast([3], [1], [1])
    scored = join_actuals(fc, actuals_for(fc, [1]))
    with pytest.raises(InputError, match=message):
        evaluate(scored, **kwargs)


def test_scored_refuses_misaligned_arrays():
    one = np.zeros(2, dtype=np.int64)
    with pytest.raises(InputError, match="Scored arrays disagree in length"):
        Scored(origin=one, step=one + 1, month_id=one + 1, unit=one, actual=np.zeros(3),
               point=np.zeros(2), samples=np.zeros((2, 1)))


# --- the reference value on real data --------------------------------------------------------


@pytest.mark.shared_data
def test_all_zeros_calibration_msle_is_the_views_reference(shared_data):
    """All-zeros forecast, calibration rolling origin (13 origins 444..456, steps 1..36, units
    present at each origin): pooled MSLE 2.147, the figure VIEWS reports (DOMAIN.md 5)."""
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    data = pd.read_parquet(path, columns=["month_id", "country_id", "ged_sb"])
    parts = []
    for origin in range(444, 457):
        units = np.sort(data.loc[data["month_id"] == origin, "country_id"].unique())
        grid = pd.MultiIndex.from_product([[origin], range(1, 37), units],
                                          names=["origin", "step", UNIT]).to_frame(index=False)
        grid.insert(2, "month_id", grid["origin"] + grid["step"])
        parts.append(grid.astype("int64"))
    frame = pd.concat(parts, ignore_index=True)
    zeros = Forecast(frame=frame, point=np.zeros(len(frame)),
                     samples=np.zeros((len(frame), 1)), unit_column=UNIT)

    scored = join_actuals(zeros, data, value_column="ged_sb")
    result = evaluate(scored, ["msle", "mse", "rmsle"])

    assert result.pooled["msle"] == pytest.approx(2.147, abs=0.001)
    assert result.n_scored + result.n_unscored == len(frame)
    assert result.n_scored == 89_388
    groups = {s: t.loc[t["metric"] == "msle", "group"].tolist() for s, t in result.groups.items()}
    assert groups["step"] == list(range(1, 37))
    assert groups["sequence"] == list(range(444, 457))
    assert groups["month"] == list(range(445, 493))
