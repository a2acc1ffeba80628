"""The self-test passes on clean data (synthetic, demo world, real cm) and fails loudly, by
detector name, when a detector is broken or the data is not clean."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ewspipe.drift import detectors as detectors_module
from ewspipe.drift.check import DriftConfig
from ewspipe.drift.detectors import DETECTORS, Detector
from ewspipe.drift.selftest import PERTURBATIONS, require_pass, run_selftest
from ewspipe.errors import CheckFailed
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.synthetic import demo_world
from ewspipe.settings import DriftSettings, DriftThresholds, load_settings


def _config(level: str = "cm", **thresholds: float) -> DriftConfig:
    settings = DriftSettings(thresholds=DriftThresholds(**thresholds))
    return DriftConfig.from_settings(settings, "forecasting", level)


def test_every_detector_has_a_perturbation():
    assert set(PERTURBATIONS) == set(DETECTORS)


def test_passes_on_clean_synthetic_panel(panel, config):
    result = require_pass(run_selftest(panel, config, snapshot="cm-test"))
    assert result.passed and result.clean_alarms == []
    assert [c.detector for c in result.cases] == list(DETECTORS)
    assert all(c.fired and c.max_severity >= 2 for c in result.cases)
    doc = result.to_dict()
    assert doc["passed"] and doc["failures"] == [] and doc["month"] == 447


# Every month `make run` tests from 2025 through 2035 (its default last month is the last
# complete calendar month: 563 = 2026-11 as of this writing). The world is prefix-stable, so
# one world through the last month serves them all.
DEMO_MONTHS = range(540, 661)


@pytest.fixture(scope="module")
def demo_panels():
    """The demo world at the defaults of `ewspipe data demo` (the embedded ewspipe.toml)."""
    world = demo_world(load_settings().demo, last_month=max(DEMO_MONTHS))
    return {lvl: validate_panel(frame, lvl, source="demo", today=date(2036, 1, 1))[0]
            for lvl, frame in (("cm", world.cm), ("pgm", world.pgm))}


@pytest.mark.parametrize("level", ["cm", "pgm"])
def test_passes_on_the_demo_world_at_the_defaults(demo_panels, level):
    """What `make run` checks: every detector quiet on the clean demo world and firing on its
    perturbation, on both levels, at the default [demo] and [drift] settings."""
    config = DriftConfig.from_settings(load_settings().drift, "forecasting", level)
    failures = {}
    for month in DEMO_MONTHS:
        result = run_selftest(demo_panels[level], config, end=month)
        assert result.month == month and len(result.cases) == len(DETECTORS)
        if result.failures() or result.not_applicable():
            failures[month] = result.failures() + result.not_applicable()
    assert failures == {}


@pytest.mark.shared_data
def test_passes_on_the_real_cm_data(shared_data):
    frame = pd.read_parquet(shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet")
    panel, _ = validate_panel(frame, "cm", source="fat002")
    config = DriftConfig.from_settings(DriftSettings(), "forecasting", "cm")
    result = require_pass(run_selftest(panel, config))
    assert result.month == 535
    fired = {c.detector: c for c in result.cases}
    assert fired["unit_missingness"].top["offender"].startswith("country_id=")
    # and the real structural break of Sudan's split (Aug 2011) is not "clean"
    broken = run_selftest(panel, config, end=380)
    assert not broken.passed
    assert any(f.startswith("unit_missingness: fired on the clean data")
               for f in broken.failures())


def test_broken_detector_fails_loudly_by_name(panel, config, monkeypatch):
    never = Detector("ks_drift", "feature", "broken",
                     lambda w, k: [detectors_module.Measurement(
                         f, "global", np.zeros(0, np.int64), np.array([np.nan]))
                         for f in w.features])
    monkeypatch.setitem(DETECTORS, "ks_drift", never)
    result = run_selftest(panel, config)
    assert not result.passed
    with pytest.raises(CheckFailed, match="ks_drift: did not fire on its perturbation "
                                          "'scale_positives'") as info:
        require_pass(result)
    assert "positive_shift" not in str(info.value)
    assert info.value.exit_code == 1


def test_detector_firing_on_clean_data_fails(panel):
    too_tight = _config(global_zeros=0.5)  # the clean zero share (~0.75) is above it
    with pytest.raises(CheckFailed, match="global_zeros: fired on the clean data"):
        require_pass(run_selftest(panel, too_tight))


def test_threshold_too_loose_for_the_perturbation_fails(panel):
    blind = _config(extreme_values=1e9)
    with pytest.raises(CheckFailed, match="extreme_values: did not fire"):
        require_pass(run_selftest(panel, blind))


def test_detector_without_perturbation_fails(panel, config, monkeypatch):
    monkeypatch.delitem(PERTURBATIONS, "delta_zeroes")
    with pytest.raises(CheckFailed, match="delta_zeroes: no perturbation is defined"):
        require_pass(run_selftest(panel, config))


def test_perturbations_never_touch_the_input(panel, config):
    from ewspipe.drift.windows import build_windows

    windows = build_windows(panel, min_standard_months=12)
    before = windows.values.copy()
    for p in PERTURBATIONS.values():
        p.apply(windows, np.random.default_rng(0))
    np.testing.assert_array_equal(windows.values, before)


def test_positive_value_detectors_are_not_applicable_on_tiny_data():
    """Too few positives to compare distributions: reported as not applicable, not as broken."""
    import numpy as np
    import pandas as pd

    from ewspipe.drift.check import DriftConfig
    from ewspipe.drift.selftest import run_selftest
    from ewspipe.panel.schema import validate_panel
    from ewspipe.settings import DriftSettings

    months = np.arange(121, 161)
    rows = [(m, u, 1 if (m + u) % 17 == 0 else 0) for m in months for u in range(1, 6)]
    panel, _ = validate_panel(pd.DataFrame(rows, columns=["month_id", "country_id", "ged_sb"]),
                              "cm", source="tiny")
    result = run_selftest(panel, DriftConfig.from_settings(DriftSettings(), "forecasting", "cm"))
    assert set(result.not_applicable()) == {"ks_drift", "positive_shift"}
    assert not any(f.startswith(("ks_drift", "positive_shift")) for f in result.failures())
