"""The pyfunc model of a stored forecast (ewspipe.store.pyfunc), on its own: selection by
key columns, clear refusals, and a large forecast served without its draws. The registry
path (``models:/<name>@production``) is tested in tests/release/test_release_mlflow.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.models.forecast import Forecast
from ewspipe.store.predictions import write_forecast

pyfunc = pytest.importorskip("ewspipe.store.pyfunc")  # imports mlflow


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """Two origins x 3 steps x 2 countries, 4 draws each."""
    rng = np.random.default_rng(5)
    keys = [(o, s, o + s, c) for o in (100, 101) for s in (1, 2, 3) for c in (57, 245)]
    frame = pd.DataFrame(keys, columns=["origin", "step", "month_id", "country_id"])
    samples = rng.gamma(1.0, 3.0, size=(len(frame), 4))
    forecast = Forecast(frame=frame, point=samples.mean(axis=1), samples=samples,
                        unit_column="country_id")
    path = tmp_path_factory.mktemp("pyfunc") / "forecast.parquet"
    return write_forecast(forecast, path, metadata={"model": "calm", "config_hash": "c" * 64})


def _load(path: Path):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(path))


def test_predict_serves_the_stored_rows(stored, tmp_path):
    model = _load(pyfunc.save_forecast_model(tmp_path / "m", stored,
                                             metadata={"ewspipe.model": "calm"}))
    table = pd.read_parquet(stored)
    pd.testing.assert_frame_equal(model.predict(None), table, check_exact=True)
    pd.testing.assert_frame_equal(model.predict(pd.DataFrame()), table, check_exact=True)
    # any key columns, any order, duplicates and unknown keys: the stored rows, stored order
    picked = model.predict(pd.DataFrame({"country_id": [245, 245, 9], "step": [2, 2, 1]}))
    pd.testing.assert_frame_equal(
        picked, table[(table.country_id == 245) & (table.step == 2)].reset_index(drop=True))
    by_month = model.predict({"month_id": [102.0]})  # a mapping, whole floats: fine
    assert sorted(by_month["month_id"].unique()) == [102] and len(by_month) == 4
    assert model.metadata.metadata["ewspipe.model"] == "calm"
    assert model.metadata.metadata["ewspipe.samples"] == "true"


def test_predict_refuses_what_it_cannot_select_by(stored, tmp_path):
    model = _load(pyfunc.save_forecast_model(tmp_path / "m", stored, metadata={}))
    with pytest.raises(ValueError, match="give any of origin, step, month_id, country_id"):
        model.predict(pd.DataFrame({"priogrid_gid": [1]}))
    with pytest.raises(ValueError, match=r"columns \['month_id'\] must hold whole numbers"):
        model.predict(pd.DataFrame({"month_id": ["May"]}))


def test_a_large_forecast_is_served_without_its_draws(stored, tmp_path, monkeypatch):
    monkeypatch.setattr(pyfunc, "MAX_SAMPLE_VALUES", 10)  # 12 rows x 4 draws is "large"
    model = _load(pyfunc.save_forecast_model(tmp_path / "m", stored, metadata={}))
    served = model.predict(None)
    assert "samples" not in served.columns
    pd.testing.assert_frame_equal(served, pd.read_parquet(stored).drop(columns="samples"))
    assert model.metadata.metadata["ewspipe.samples"] == "false"
