"""Stacking: simplex weights of the log-scale combination, shrinkage, per-window scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.catalog.ensembles import check_ensemble_text
from ewspipe.catalog.rewrite import write_stacking
from ewspipe.ensembles.stacking import StackWindow, shrink, stack, window_rows
from ewspipe.errors import InputError, SpecError
from ewspipe.models.forecast import Forecast


def _windows(true_w: dict[str, float], *, n_windows: int = 3, rows: int = 400, noise: float = 0.0,
             seed: int = 0) -> dict[str, StackWindow]:
    """Members whose log1p points are independent; the actual is their weighted log mean."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_windows):
        logs = {m: rng.gamma(1.0, 1.5, rows) for m in true_w}
        z = sum(w * logs[m] for m, w in true_w.items()) + noise * rng.normal(size=rows)
        out[f"w{k}"] = StackWindow({m: np.expm1(v) for m, v in logs.items()},
                                   np.expm1(np.maximum(z, 0.0)))
    return out


def test_recovers_known_weights_without_shrinkage() -> None:
    true_w = {"a": 0.6, "b": 0.3, "c": 0.1}
    result = stack(_windows(true_w), shrinkage=0.0)
    assert result.members == ("a", "b", "c") and result.windows == ("w0", "w1", "w2")
    for m, w in true_w.items():
        assert result.fitted[m] == pytest.approx(w, abs=1e-4)
        assert result.weights[m] == result.fitted[m]
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert result.pooled_stacked < 1e-8 < result.pooled_equal
    assert all(s.stacked < s.equal and s.gain > 0.99 and s.rows == 400 for s in result.scores)


def test_a_useless_member_gets_no_weight_and_weights_stay_on_the_simplex() -> None:
    windows = _windows({"a": 0.7, "b": 0.3}, noise=0.2, seed=1)
    rng = np.random.default_rng(5)
    for data in windows.values():  # "junk" is far off: its best weight is 0, not negative
        data.points["junk"] = np.expm1(rng.gamma(3.0, 2.0, len(data.actual)))  # type: ignore[index]
    result = stack(windows, shrinkage=0.0)
    assert result.fitted["junk"] == 0.0
    assert result.fitted["a"] == pytest.approx(0.7, abs=0.03)
    assert all(w >= 0 for w in result.fitted.values())


def test_shrinkage_moves_toward_equal_weights() -> None:
    windows = _windows({"a": 0.9, "b": 0.1}, noise=0.1)
    full = stack(windows, shrinkage=1.0)
    assert full.weights == {"a": 0.5, "b": 0.5}
    assert full.pooled_stacked == pytest.approx(full.pooled_equal)
    half = stack(windows, shrinkage=0.5)
    assert half.fitted == stack(windows, shrinkage=0.0).fitted  # the fit ignores s
    for m in ("a", "b"):
        assert half.weights[m] == pytest.approx(0.5 * half.fitted[m] + 0.25, abs=2e-6)
    np.testing.assert_allclose(shrink(np.array([1.0, 0.0, 0.0, 0.0]), 0.2),
                               [0.85, 0.05, 0.05, 0.05])
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(InputError, match="shrinkage must be a number in"):
            stack(windows, shrinkage=bad)  # type: ignore[arg-type]


def test_deterministic_and_order_of_members_kept() -> None:
    windows = _windows({"b": 0.25, "a": 0.75}, noise=0.3, seed=2)
    one, two = stack(windows, shrinkage=0.3), stack(windows, shrinkage=0.3)
    assert one == two and one.members == ("b", "a")


def test_refusals_name_the_window_and_the_member() -> None:
    windows = _windows({"a": 0.5, "b": 0.5}, n_windows=2, rows=50)
    short = dict(windows)
    short["w1"] = StackWindow({"a": windows["w1"].points["a"][:-1], "b": windows["w1"].points["b"]},
                              windows["w1"].actual)
    with pytest.raises(InputError, match=r"window 'w1': member 'a' has 49 rows but the actuals "
                                         r"have 50"):
        stack(short)
    lacking = {**windows, "w1": StackWindow({"a": windows["w1"].points["a"]},
                                            windows["w1"].actual)}
    with pytest.raises(InputError, match=r"window 'w1': members differ .*missing \['b'\]"):
        stack(lacking)
    bad = {**windows, "w0": StackWindow({"a": np.full(50, np.nan), "b": windows["w0"].points["b"]},
                                        windows["w0"].actual)}
    with pytest.raises(InputError, match=r"window 'w0': member 'a' has 50 non-finite"):
        stack(bad)
    with pytest.raises(InputError, match="at least one window"):
        stack({})


def _forecast(units, values, *, origin: int = 10) -> Forecast:
    frame = pd.DataFrame({"origin": origin, "step": 1, "month_id": origin + 1,
                          "country_id": list(units)})
    point = np.asarray(values, dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=point[:, None], unit_column="country_id")


def test_window_rows_aligns_by_key_and_refuses_gaps() -> None:
    actuals = pd.DataFrame({"month_id": 11, "country_id": [3, 1, 2], "value": [30.0, 10, 20]})
    data = window_rows("2005", {"a": _forecast([1, 2, 3], [1, 2, 3]),
                                "b": _forecast([2, 3, 1], [5, 6, 4])}, actuals)
    np.testing.assert_array_equal(data.actual, [10, 20, 30])
    np.testing.assert_array_equal(data.points["b"], [4, 5, 6])
    with pytest.raises(InputError, match=r"(?s)window '2005': .*member 'b' lacks 1 rows"):
        window_rows("2005", {"a": _forecast([1, 2, 3], [1, 2, 3]),
                             "b": _forecast([1, 2], [1, 2])}, actuals)
    # a row without an actual (a unit absent that month) is left out and counted
    partial = window_rows("2005", {"a": _forecast([1, 2, 4], [1, 2, 3])}, actuals)
    np.testing.assert_array_equal(partial.points["a"], [1, 2])
    np.testing.assert_array_equal(partial.actual, [10, 20])
    assert partial.unscored == 1 and data.unscored == 0
    with pytest.raises(InputError, match=r"window '2005': none of its 2 forecast rows has an "):
        window_rows("2005", {"a": _forecast([4, 5], [1, 2])}, actuals)
    with pytest.raises(InputError, match=r"window '2005': the actuals repeat"):
        window_rows("2005", {"a": _forecast([1], [1])}, pd.concat([actuals, actuals]))


ENSEMBLE = """# the deployed cm ensemble
name = "steady_chorus"
level = "cm"
target = "ged_sb"
members = ["amber_tree", "amber_ridge"]
aggregation = "mean"   # to be stacked
status = "deployed"
owner = "ann"
description = "mean of the deployed cm models"

[stacking]
shrinkage = 0.25  # chosen by hand
"""


def test_write_stacking_keeps_comments_and_records_provenance(tmp_path: Path) -> None:
    path = tmp_path / "steady_chorus.toml"
    path.write_text(ENSEMBLE)
    windows = _windows({"amber_ridge": 0.2, "amber_tree": 0.8}, noise=0.2)
    result = stack(windows, shrinkage=0.25)
    old_hash = check_ensemble_text(path, ENSEMBLE)[0].spec.config_hash  # type: ignore[union-attr]
    new_hash = write_stacking(path, result, fitted="2026-12-06", expected_config_hash=old_hash)
    text = path.read_text()
    assert "# the deployed cm ensemble" in text and "# chosen by hand" in text
    spec = check_ensemble_text(path, text)[0].spec
    assert spec is not None and spec.config_hash == new_hash != old_hash
    assert spec.aggregation == "logmean"
    assert list(spec.weights or {}) == ["amber_tree", "amber_ridge"]  # the file's order
    assert spec.weight_of("amber_tree") == pytest.approx(result.weights["amber_tree"])
    record = spec.stacking
    assert record is not None and record.shrinkage == 0.25 and record.fitted == "2026-12-06"
    assert record.windows == ("w0", "w1", "w2")
    assert record.fitted_weights == pytest.approx(result.fitted)
    assert record.stacked_msle == pytest.approx(result.pooled_stacked, abs=1e-6)
    # a second fit replaces the record and the weights, not the comments
    write_stacking(path, stack(windows, shrinkage=1.0), fitted="2026-12-07")
    again = check_ensemble_text(path, path.read_text())[0].spec
    assert again is not None and dict(again.weights or {}) == {"amber_tree": 0.5,
                                                               "amber_ridge": 0.5}
    assert path.read_text().count("[weights]") == 1 and "# chosen by hand" in path.read_text()


def test_write_stacking_refuses_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "steady_chorus.toml"
    path.write_text(ENSEMBLE)
    zero = stack({"w": StackWindow({"amber_tree": np.array([1.0, 5.0, 9.0]),
                                    "amber_ridge": np.array([40.0, 0.0, 70.0])},
                                   np.array([1.0, 5.0, 9.0]))}, shrinkage=0.0)
    assert zero.weights["amber_ridge"] == 0.0
    with pytest.raises(SpecError, match=r"'amber_ridge' would get weight 0 \(shrinkage 0\)"):
        write_stacking(path, zero, fitted="2026-12-06")
    other = stack(_windows({"a": 0.5, "b": 0.5}, n_windows=1, rows=20))
    with pytest.raises(SpecError, match=r"the weights are for members \['a', 'b'\]"):
        write_stacking(path, other, fitted="2026-12-06")
    with pytest.raises(SpecError, match="changed while the weights were learned"):
        write_stacking(path, zero, fitted="x", expected_config_hash="0" * 64)
    assert path.read_text() == ENSEMBLE


def test_count_mean_weights_are_learned_for_the_mean_aggregation() -> None:
    """combine = "mean": the actual is a weighted count mean of the members; the weights are
    recovered, and they beat the log-scale combination on such data."""
    rng = np.random.default_rng(7)
    windows = {}
    for k in range(3):
        points = {m: np.expm1(rng.gamma(1.0, 2.0, 500)) for m in ("a", "b", "c")}
        actual = 0.2 * points["a"] + 0.5 * points["b"] + 0.3 * points["c"]
        windows[f"w{k}"] = StackWindow(points, actual)
    result = stack(windows, shrinkage=0.0, combine="mean")
    assert result.combine == "mean"
    for m, w in {"a": 0.2, "b": 0.5, "c": 0.3}.items():
        assert result.fitted[m] == pytest.approx(w, abs=2e-3)
    assert result.pooled_stacked < 1e-6
    assert stack(windows, shrinkage=0.0).pooled_stacked > 10 * result.pooled_stacked
    with pytest.raises(InputError, match="combine must be one of logmean, mean"):
        stack(windows, combine="median")  # type: ignore[arg-type]
