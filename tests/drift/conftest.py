"""A small stationary, zero-inflated panel: quiet for every detector at its last month."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ewspipe.drift.check import DriftConfig
from ewspipe.panel.schema import Panel, validate_panel
from ewspipe.settings import DriftSettings

FIRST, LAST = 400, 447  # 48 months: the last one is tested against the 30 before it


def make_frame(units: int = 200, first: int = FIRST, last: int = LAST, seed: int = 7
               ) -> pd.DataFrame:
    """Counts ged_sb / ged_ns (zero-inflated, heavy-tailed) plus a numeric covariate."""
    rng = np.random.default_rng(seed)
    months = np.arange(first, last + 1)
    kind = rng.choice(3, size=units, p=[0.65, 0.28, 0.07])  # never / sometimes / always
    p_active = np.where(kind == 0, 0.0, np.where(kind == 1, rng.uniform(0.1, 0.5, units), 1.0))
    shape = (len(months), units)
    frames = {"month_id": np.repeat(months, units), "country_id": np.tile(np.arange(1, units + 1),
                                                                         len(months))}
    for col, scale in (("ged_sb", 3.0), ("ged_ns", 1.5)):
        active = rng.random(shape) < p_active
        size = np.ceil(rng.lognormal(scale, 1.0, shape)).astype(np.int64)
        frames[col] = np.where(active, size, 0).ravel()
    frames["population"] = np.tile(rng.lognormal(15, 1, units), len(months)) \
        * rng.normal(1, 0.01, len(months) * units)
    frames["gwcode"] = frames["country_id"] * 3
    return pd.DataFrame(frames)


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def config() -> DriftConfig:
    return DriftConfig.from_settings(DriftSettings(), "forecasting", "cm")


def panel_of(frame: pd.DataFrame) -> Panel:
    panel, _ = validate_panel(frame, "cm", source="test panel")
    return panel


@pytest.fixture
def panel(frame: pd.DataFrame) -> Panel:
    return panel_of(frame)


@pytest.fixture
def to_panel():
    """Validate a (perturbed) frame into a Panel."""
    return panel_of
