"""Online evaluation on the real cm data: monthly runs over 2019-2023 replayed, then scored.

Each simulated month M imports the real panel cut at month_id <= M as a snapshot (what the
pipeline would have seen then, without revisions) and forecasts with the shipped cm baseline
models and one learned model. ``online-eval`` with the full panel (through 2024-07) must give
per-lead-time scores equal to an offline evaluation of the same stored forecasts, bit for bit.
To stay within about a minute, every 6th month is simulated (Jan 2019 .. Jul 2023, plus Dec
2023). The figures are in docs/online_eval.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS
from ewspipe.models.forecast import Forecast
from ewspipe.store.predictions import read_forecast

REPO = Path(__file__).resolve().parents[2]
PANEL = Path("views_ged_cm") / "views_fat002_ged_sb_cm.parquet"
ORIGINS = (*range(469, 529, 6), 528)  # 2019-01 .. 2023-07 every 6 months, and 2023-12
BASELINES = ("zero_line", "last_value", "log_mean", "year_average", "past_draws")

LEARNED = """
name = "quick_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A small LightGBM stepshifter standing in for the deployed model."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
log_target = true
seed = 7

[hyperparameters.learner_params]
n_estimators = 20
num_leaves = 15
"""


@pytest.mark.shared_data
def test_online_eval_matches_offline_on_real_cm(shared_data: Path, tmp_path: Path, cli):
    source = shared_data / PANEL
    if not source.is_file():
        pytest.fail(f"{source} is missing from the shared data folder")
    models = tmp_path / "models"
    models.mkdir()
    for name in BASELINES:  # the shipped baselines, unchanged
        shutil.copy(REPO / "models" / f"{name}.toml", models)
    (models / "quick_tree.toml").write_text(LEARNED)
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n[tracking]\nenabled = false\n')

    def go(*args: str) -> dict:
        res = cli("--config", str(cfg), *args)
        assert res.code in (0, 1), res.err  # online-eval exits 1 when it alerts
        return res.json()

    panel = pd.read_parquet(source)
    runs = []
    for month in ORIGINS:
        cut = tmp_path / f"cm_{month}.parquet"
        panel[panel["month_id"] <= month].to_parquet(cut, index=False)
        snap = go("data", "import", "panel", str(cut), "--level", "cm", "--json")["snapshot"]
        runs.append(go("forecast", "--level", "cm", "--snapshot", snap, "--json"))
    full = go("data", "import", "panel", str(source), "--level", "cm", "--json")
    doc = go("online-eval", "--snapshot", full["snapshot"], "--json", "--no-alerts")
    assert doc["actuals"]["cm"]["last_month"] == int(panel["month_id"].max())

    actuals = pd.DataFrame({"month_id": panel["month_id"], "country_id": panel["country_id"],
                            "value": panel["ged_sb"]})
    stored = pd.read_parquet(doc["files"]["scores"])
    online = {m["model"]: m for m in doc["models"]}
    assert set(online) == {*BASELINES, "quick_tree"}
    for name, m in online.items():
        parts = []
        for run in runs:  # one forecast per simulated month, in origin order
            entry = next(e for e in run["models"] if e["model"] == name)
            parts.append(read_forecast(Path(run["path"]) / entry["predictions"])[0])
        fc = Forecast.concat(parts)
        offline = evaluate(join_actuals(fc, actuals),
                           POINT_METRICS + (SAMPLE_METRICS if fc.n_samples > 1 else ()))
        assert [r["origin"] for r in m["runs"]] == list(ORIGINS)
        assert m["pooled"] == offline.pooled
        steps = offline.groups["step"]
        assert sorted(set(steps["group"])) == list(range(1, 37))
        for row in m["by_step"]:  # JSON: per lead time, every metric
            ref = steps[steps["group"] == row["step"]]
            for r in ref.itertuples(index=False):
                assert row[r.metric] == (None if pd.isna(r.value) else float(r.value))
        mine = stored[(stored["model"] == name) & (stored["scheme"] == "step")]
        both = steps.merge(mine, on=["group", "metric"], suffixes=("", "_online"))
        assert len(both) == len(steps)
        a = both["value"].to_numpy(np.float64, na_value=np.nan)
        b = both["value_online"].to_numpy(np.float64, na_value=np.nan)
        assert np.array_equal(a, b, equal_nan=True)
        # rows beyond the panel's last month are pending, never scored
        assert m["pending"]["rows"] == int((fc.frame["month_id"] > 535).sum())
        assert m["scored"] + m["pending"]["rows"] + m["missing_actuals"] == len(fc)
    # the learned model beats the all-zero baseline over the replayed years
    assert online["quick_tree"]["pooled"]["msle"] < online["zero_line"]["pooled"]["msle"]
