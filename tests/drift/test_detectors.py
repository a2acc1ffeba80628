"""Each detector is quiet on clean data and fires on the break it is meant to catch."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.alerts.records import Severity
from ewspipe.drift.check import (
    SEVERITY_CAP,
    DriftConfig,
    alarms_from,
    check_panel,
    severity_of,
)
from ewspipe.drift.detectors import DETECTORS, Measurement, get_detector, names
from ewspipe.drift.windows import build_windows, feature_columns
from ewspipe.errors import InputError, SettingsError
from ewspipe.panel.schema import Level, Panel, PanelSpec
from ewspipe.settings import DriftOverrides, DriftSettings, DriftThresholds, load_settings

REPO = Path(__file__).resolve().parents[2]
LAST = 447
Perturb = Callable[[pd.DataFrame], pd.DataFrame]


def _test_rows(df: pd.DataFrame) -> pd.Series:
    return df["month_id"] == LAST


def drop_tenth_of_units(df: pd.DataFrame) -> pd.DataFrame:
    """A tenth of the countries are missing from the newest month."""
    gone = df["country_id"].isin(range(1, 21)) & _test_rows(df)
    return df[~gone]


def covariate_nan(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    rows = np.flatnonzero(_test_rows(df))[::5]  # a fifth of the newest covariate values
    df.loc[df.index[rows], "population"] = np.nan
    return df


def zero_out(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.loc[_test_rows(df), ["ged_sb", "ged_ns", "population"]] = 0
    return df


def silence_always_active(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    active = df.groupby("country_id")["ged_sb"].transform(lambda s: (s > 0).all())
    df.loc[_test_rows(df) & active, ["ged_sb", "ged_ns"]] = 0
    return df


def fill_zeros(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    zero = _test_rows(df) & (df["ged_sb"] == 0)
    df.loc[df.index[np.flatnonzero(zero)[::2]], "ged_sb"] = 1
    return df


def inject_extreme(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.loc[df.index[np.flatnonzero(_test_rows(df))[3]], "ged_sb"] = 10 * df["ged_sb"].max()
    return df


def scale_positives(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.loc[_test_rows(df), ["ged_sb", "ged_ns"]] *= 10
    return df


def drop_nonzero(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    positive = np.flatnonzero(_test_rows(df) & (df["ged_sb"] > 0))
    df.loc[df.index[positive[: int(0.9 * len(positive))]], "ged_sb"] = 0
    return df


CASES: dict[str, Perturb] = {
    "global_missingness": drop_tenth_of_units,
    "month_missingness": drop_tenth_of_units,
    "unit_missingness": drop_tenth_of_units,
    "feature_missingness": covariate_nan,
    "global_zeros": zero_out,
    "month_zeros": zero_out,
    "unit_zeros": silence_always_active,
    "feature_zeros": zero_out,
    "delta_completeness": covariate_nan,
    "delta_zeroes": fill_zeros,
    "extreme_values": inject_extreme,
    "ks_drift": scale_positives,
    "nonzero_shift": drop_nonzero,
    "positive_shift": scale_positives,
}


def test_every_detector_has_a_case_and_a_threshold():
    assert set(CASES) == set(DETECTORS)
    assert names() == list(DriftThresholds.model_fields)
    assert set(DriftOverrides.model_fields) - {"fail_level"} == set(DETECTORS)


def test_clean_panel_is_quiet(panel, config):
    report = check_panel(panel, config)
    assert report.alarms == [], [a.message for a in report.alarms]
    assert not report.failed and report.max_severity == 0
    assert report.windows["test"] == [LAST, LAST]
    assert report.windows["standard"] == [LAST - 30, LAST - 1]
    assert report.windows["features"] == ["ged_sb", "ged_ns", "population"]


@pytest.mark.parametrize("detector", list(CASES))
def test_detector_fires_on_its_perturbation(detector, frame, to_panel, config):
    report = check_panel(to_panel(CASES[detector](frame)), config)
    fired = [a for a in report.alarms if a.detector == detector]
    assert fired, f"{detector} did not fire; alarms: {report.counts()}"
    for a in fired:
        assert a.value / a.threshold > 1
        assert a.severity == severity_of(a.value, a.threshold) >= 2
        assert a.month == LAST


def test_offenders_name_unit_month_or_global(frame, to_panel, config):
    report = check_panel(to_panel(drop_tenth_of_units(frame)), config)
    units = {a.offender for a in report.alarms if a.detector == "unit_missingness"}
    assert units == {f"country_id={u}" for u in range(1, 21)}
    assert report.units["dropped_count"] == 20
    months = [a for a in report.alarms if a.detector == "month_missingness"]
    assert [a.offender for a in months] == [f"month_id={LAST}"]
    glob = [a for a in report.alarms if a.detector == "global_missingness"]
    assert glob[0].offender == "global" and glob[0].value == pytest.approx(0.1)
    extreme = check_panel(to_panel(inject_extreme(frame)), config)
    hit = next(a for a in extreme.alarms if a.detector == "extreme_values")
    assert hit.offender == "country_id=4" and hit.feature == "ged_sb"


def test_new_units_are_not_missingness(frame, to_panel, config):
    extra = frame[(frame["month_id"] == LAST) & (frame["country_id"] == 1)].assign(country_id=999)
    report = check_panel(to_panel(pd.concat([frame, extra])), config)
    assert not [a for a in report.alarms if "missingness" in a.detector]
    assert report.units["added"] == [999]


# ------------------------------------------------------------------ severity


@pytest.mark.parametrize(
    ("value", "threshold", "severity"),
    [(0.06, 0.05, 2), (0.1, 0.05, 3), (0.151, 0.05, 4), (1.0, 0.05, 21), (5e17, 1.25, 100),
     (float("inf"), 1.0, SEVERITY_CAP)],
)
def test_severity_formula(value, threshold, severity):
    assert severity_of(value, threshold) == severity


def test_alarm_fires_only_above_the_threshold(config):
    m = Measurement("ged_sb", "month", np.array([1, 2, 3, 4]), np.array([0.05, 0.0500001, np.nan,
                                                                          0.2]))
    alarms = alarms_from("month_missingness", [m], 0.05, config, month=4,
                         unit_column="country_id")
    assert [a.offender for a in alarms] == ["month_id=4", "month_id=2"]  # worst first
    assert [a.severity for a in alarms] == [5, 2]
    assert [a.level for a in alarms] == [Severity.ERROR, Severity.WARNING]


def test_alert_levels_and_fail_level(config):
    assert config.alert_level(2) is Severity.WARNING
    assert config.alert_level(3) is Severity.ERROR
    assert config.alert_level(10) is Severity.CRITICAL


def test_alerts_are_records_capped_per_group(frame, to_panel):
    config = DriftConfig.from_settings(DriftSettings(max_alerts=3), "forecasting", "cm")
    report = check_panel(to_panel(drop_tenth_of_units(frame)), config, snapshot="cm-x")
    alerts = report.alerts(run_id="r1")
    unit = [a for a in alerts if a.source == "drift.unit_missingness"]
    assert len(unit) == 4  # three offenders plus one summary of the other 17
    assert unit[-1].offender == "17 more" and unit[-1].details["alarms_in_group"] == 20
    assert all(a.run_id == "r1" and a.details["snapshot"] == "cm-x" for a in alerts)
    assert {a.source for a in alerts} == {f"drift.{d}" for d in report.counts()}
    assert unit[0].severity is Severity.CRITICAL  # severity 21 >= critical_level 10


# ------------------------------------------------------------------ windows and features


def test_feature_columns_skip_identifiers_and_text(frame, to_panel):
    panel = to_panel(frame.assign(name="x", priogrid_gid=1, region_id=3))
    assert feature_columns(panel, ignore=["gwcode"]) == ("ged_sb", "ged_ns", "population")
    assert "gwcode" in feature_columns(panel)


def test_windows_shape_and_short_history(panel):
    w = build_windows(panel, end=430, standard_months=30, min_standard_months=12,
                      ignore=["gwcode"])
    assert list(w.months[[0, -1]]) == [400, 430] and w.n_standard == 30
    assert w.values.shape == (31, 200, 3)
    short = build_windows(panel, end=415, min_standard_months=12)
    assert short.n_standard == 15
    with pytest.raises(InputError, match="at least 12 standard months"):
        build_windows(panel, end=405, min_standard_months=12)
    with pytest.raises(InputError, match=r"outside the panel's months 400\.\.447"):
        build_windows(panel, end=500)
    with pytest.raises(InputError, match="not a numeric column"):
        build_windows(panel, features=["nope"])


def test_unknown_detector_names_the_valid_ones():
    with pytest.raises(InputError, match=r"'ks' is not a drift detector; use one of .*ks_drift"):
        get_detector("ks")


# ------------------------------------------------------------------ settings


def test_thresholds_resolve_level_then_run_type():
    settings = DriftSettings(
        pgm=DriftOverrides(ks_drift=7.0, extreme_values=9.0),
        validation=DriftOverrides(ks_drift=8.0, fail_level=5),
    )
    pgm_val = DriftConfig.from_settings(settings, "validation", "pgm")
    assert pgm_val.thresholds["ks_drift"] == 8.0 and pgm_val.thresholds["extreme_values"] == 9.0
    assert pgm_val.fail_level == 5
    cm_fc = DriftConfig.from_settings(settings, "forecasting", "cm")
    assert cm_fc.thresholds["ks_drift"] == DriftThresholds().ks_drift and cm_fc.fail_level == 3
    with pytest.raises(InputError, match=r"^unknown run type 'nowcast'") as exc:
        DriftConfig.from_settings(settings, "nowcast", "cm")
    assert exc.value.parameter == "run_type"  # the CLI says "option --run-type: ..."


def test_built_in_pgm_overrides():
    pgm = DriftConfig.from_settings(DriftSettings(), "forecasting", "pgm").thresholds
    assert pgm["global_zeros"] == 0.9995 and pgm["ks_drift"] == 1e4
    assert DriftConfig.from_settings(DriftSettings(), "forecasting", "cm").thresholds[
        "global_zeros"] == 0.995


def test_repository_file_documents_the_drift_defaults():
    assert load_settings(REPO / "ewspipe.toml").drift == load_settings().drift


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[drift.thresholds]\nks_drft = 3\n", "drift.thresholds.ks_drft"),
        ("[drift.thresholds]\nks_drift = 0\n", "drift.thresholds.ks_drift"),
        ("[drift.forecast]\nks_drift = 3\n", "drift.forecast"),
        ("[drift]\nmin_standard_months = 40\n", "min_standard_months (40) exceeds"),
    ],
)
def test_invalid_drift_settings_name_the_key(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=needle.replace(".", r"\.").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_settings(cfg)


# ------------------------------------------------------------------ scale


def test_pgm_sized_panel_runs_vectorised():
    """13,110 cells x 31 months: timing is reported, not asserted (well under a second)."""
    cells, months = 13_110, 31
    rng = np.random.default_rng(0)
    counts = np.where(rng.random(cells * months) < 0.01,
                      rng.integers(1, 50, cells * months), 0)
    frame = pd.DataFrame({
        "month_id": np.repeat(np.arange(500, 500 + months), cells),
        "priogrid_gid": np.tile(np.arange(1, cells + 1), months),
        "ged_sb": counts,
    })
    panel = Panel(frame, PanelSpec(level=Level.PGM, count_columns=("ged_sb",)))
    pgm = DriftConfig.from_settings(DriftSettings(), "forecasting", "pgm")
    start = time.perf_counter()
    report = check_panel(panel, pgm)
    elapsed = time.perf_counter() - start
    print(f"pgm drift check: {elapsed:.3f} s")
    assert report.windows["units"] == cells and report.windows["standard_months"] == 30
