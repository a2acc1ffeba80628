"""Online evaluation on a scripted history: forecasts made at months 480..485 with the data of
that month, actuals through 500 arriving later (online_history.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from online_history import CONFIG, FINAL, ORIGINS, History, history  # noqa: F401

from ewspipe.errors import InputError
from ewspipe.evaluation.schemes import Evaluation, Scored, evaluate, join_actuals
from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS
from ewspipe.flows.online import ONLINE_DIR, online_eval
from ewspipe.models.forecast import Forecast
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings
from ewspipe.store.predictions import read_forecast, write_forecast
from ewspipe.store.runs import RunStore

MODELS = ("calm_chorus", "last_value", "small_tree", "year_average", "zero_line")


@pytest.fixture
def hist(history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> History:  # noqa: F811
    """A private copy of the session's history (online-eval writes into the state dir)."""
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    return history.copy(tmp_path / "h")


# --------------------------------------------------------------------------- offline reference


def _prediction_files(settings: Settings, model: str) -> dict[int, Path]:
    """origin -> predictions of ``model``, the newest run per origin (by commit order)."""
    runs = RunStore(settings.runs_dir)
    records = [r for r in runs.list() if r["kind"] == "forecast"]
    records.sort(key=lambda r: (r["started_at"],
                                (runs.path(r["run_id"]) / "run.json").stat().st_mtime_ns))
    files = {}
    for r in records:
        for m in r["models"]:
            if m["model"] == model:
                files[r["partition"]["cm"]["origins"][0]] = runs.path(r["run_id"]) / \
                    m["predictions"]
    return files


def _stacked(settings: Settings, model: str) -> Forecast:
    files = _prediction_files(settings, model)
    return Forecast.concat([read_forecast(files[o])[0] for o in sorted(files)])


def _actuals(settings: Settings, snapshot: str) -> pd.DataFrame:
    frame = SnapshotStore(settings.snapshot_dir).load(snapshot).frame
    return pd.DataFrame({"month_id": frame["month_id"], "country_id": frame["country_id"],
                         "value": frame["ged_sb"]})


def _offline(settings: Settings, model: str, snapshot: str) -> tuple[Evaluation, Scored]:
    """An offline evaluation of the same stored forecasts: stack, join, evaluate."""
    fc = _stacked(settings, model)
    scored = join_actuals(fc, _actuals(settings, snapshot))
    metrics = POINT_METRICS + (SAMPLE_METRICS if fc.n_samples > 1 else ())
    return evaluate(scored, metrics), scored


def _window(scored: Scored, months: tuple[int, ...], metric: str = "msle") -> float:
    mask = np.isin(scored.month_id, months)
    sub = Scored(origin=scored.origin[mask], step=scored.step[mask],
                 month_id=scored.month_id[mask], unit=scored.unit[mask],
                 actual=scored.actual[mask], point=scored.point[mask],
                 samples=scored.samples[mask])
    value = evaluate(sub, [metric], schemes=()).pooled[metric]
    assert value is not None
    return value


# --------------------------------------------------------------------------- tests


def test_scores_equal_an_offline_evaluation_exactly(hist: History):
    settings = hist.settings()
    result = online_eval(settings, deliver=False)
    assert [m.model for m in result.models] == sorted(MODELS)
    stored = pd.read_parquet(settings.state_dir / ONLINE_DIR / "scores.parquet")
    cells = pd.read_parquet(settings.state_dir / ONLINE_DIR / "cells.parquet")
    for name in MODELS:
        online = result.model(name)
        offline, scored = _offline(settings, name, hist.snapshots[FINAL])
        assert online.evaluation is not None
        assert online.evaluation.pooled == offline.pooled
        for scheme in ("step", "month", "sequence"):
            pd.testing.assert_frame_equal(online.evaluation.groups[scheme],
                                          offline.groups[scheme], check_exact=True)
        # per lead time (origin 480 reaches month 500 at step 20), and the stored table
        # holds the very same numbers
        step = offline.groups["step"]
        assert sorted(set(step["group"])) == list(range(1, FINAL - ORIGINS[0] + 1))
        mine = stored[(stored["model"] == name) & (stored["scheme"] == "step")]
        merged = step.merge(mine, on=["group", "metric"], suffixes=("", "_stored"))
        assert len(merged) == len(step)
        assert (merged["value"].isna() == merged["value_stored"].isna()).all()
        both = merged["value"].notna()
        assert (merged.loc[both, "value"].to_numpy()
                == merged.loc[both, "value_stored"].to_numpy()).all()
        assert (merged["n"] == merged["n_stored"]).all()
        # per (origin, step) cell = step-wise scores of that origin alone
        origin = ORIGINS[0]
        mask = scored.origin == origin
        alone = Scored(origin=scored.origin[mask], step=scored.step[mask],
                       month_id=scored.month_id[mask], unit=scored.unit[mask],
                       actual=scored.actual[mask], point=scored.point[mask],
                       samples=scored.samples[mask])
        ref = evaluate(alone, ["msle", "mse"], schemes=("step",)).groups["step"]
        got = cells[(cells["model"] == name) & (cells["origin"] == origin)
                    & cells["metric"].isin(["msle", "mse"])]
        got = got.sort_values(["metric", "step"]).reset_index(drop=True)
        ref = ref.sort_values(["metric", "group"]).reset_index(drop=True)
        assert got["step"].tolist() == ref["group"].tolist()
        assert (got["value"].to_numpy(np.float64) == ref["value"].to_numpy(np.float64)).all()
        assert (got["month_id"] == got["origin"] + got["step"]).all()


def test_pending_missing_and_superseded_runs(hist: History):
    settings = hist.settings()
    result = online_eval(settings, deliver=False, store=False)
    for name in MODELS:
        m = result.model(name)
        fc = _stacked(settings, name)
        months = fc.frame["month_id"].to_numpy()
        assert m.rows == len(fc)
        assert m.pending.rows == int((months > FINAL).sum()) > 0
        assert m.pending.months == tuple(range(FINAL + 1, ORIGINS[-1] + 37))
        assert m.missing == 0 and m.n_scored + m.pending.rows == m.rows
        assert [r.origin for r in m.runs] == list(ORIGINS)
        assert m.runs[-1].run_id == hist.runs[ORIGINS[-1]]
        assert m.superseded == [hist.superseded]
        doc = m.to_dict()
        assert doc["scored_months"] == {"count": FINAL - ORIGINS[0], "first": ORIGINS[0] + 1,
                                        "last": FINAL}
        assert [s["step"] for s in doc["by_step"]] == list(range(1, FINAL - ORIGINS[0] + 1))


def test_actuals_of_an_earlier_month_score_only_what_had_arrived(hist: History):
    settings = hist.settings()
    result = online_eval(settings, snapshot=hist.snapshots[483], deliver=False, store=False)
    assert result.actuals["cm"].id == hist.snapshots[483]
    m = result.model("small_tree")
    assert m.scored is not None
    assert sorted(set(m.scored.month_id.tolist())) == [481, 482, 483]
    assert sorted(set(m.scored.origin.tolist())) == [480, 481, 482]  # 483.. all pending
    offline, _ = _offline(settings, "small_tree", hist.snapshots[483])
    assert m.evaluation is not None and m.evaluation.pooled == offline.pooled
    assert m.n_scored + m.pending.rows == m.rows
    later = online_eval(settings, deliver=False, store=False).model("small_tree")
    assert later.pending.rows < m.pending.rows  # actuals arrived


def test_deployed_and_shadow_compared_on_shared_rows(hist: History):
    settings = hist.settings()
    result = online_eval(settings, deliver=False, store=False)
    pairs = {(c["deployed"], c["shadow"]): c for c in result.comparisons}
    assert set(pairs) == {("small_tree", "year_average"), ("small_tree", "calm_chorus")}
    _, tree = _offline(settings, "small_tree", hist.snapshots[FINAL])
    for shadow in ("year_average", "calm_chorus"):
        c = pairs[("small_tree", shadow)]
        _, other = _offline(settings, shadow, hist.snapshots[FINAL])
        # every model forecasts the same (origin, step, unit) rows here: shared = all
        assert c["rows"] == len(tree) == len(other)
        assert c["deployed_score"] == evaluate(tree, ["msle"], schemes=()).pooled["msle"]
        assert c["shadow_score"] == evaluate(other, ["msle"], schemes=()).pooled["msle"]
        assert c["delta"] == c["shadow_score"] - c["deployed_score"]
        assert c["shadow_better"] == (c["shadow_score"] < c["deployed_score"])
        window = (FINAL - 2, FINAL - 1, FINAL)
        assert c["window"]["months"] == list(window)
        assert c["window"]["deployed_score"] == _window(tree, window)
        assert c["window"]["shadow_score"] == _window(other, window)


def test_rule_is_quiet_on_a_sound_history(hist: History):
    settings = hist.settings()
    result = online_eval(settings, deliver=False, store=False)
    a = result.model("small_tree").assessment
    assert a is not None and a.window == (498, 499, 500)
    _, tree = _offline(settings, "small_tree", hist.snapshots[FINAL])
    assert a.score == _window(tree, a.window)
    for check in a.baselines:
        _, base = _offline(settings, check.baseline, hist.snapshots[FINAL])
        assert check.baseline_score == _window(base, a.window)
        assert not check.worse
    # 20 scored months, window 3: rolling 3-month windows ending before month 498
    assert a.band.measured and a.band.windows == 20 - 3 - 3 + 1
    assert not a.worse_than_baseline and not a.beyond_band
    assert result.alerts == []
    # only deployed models are judged
    assert all(m.assessment is None for m in result.models if m.model != "small_tree")


def _spoil(settings: Settings, model: str, months: set[int] | None) -> None:
    """Inflate a model's stored predictions (all target months, or only ``months``)."""
    for path in _prediction_files(settings, model).values():
        fc, meta = read_forecast(path)
        hit = np.ones(len(fc), bool) if months is None else \
            np.isin(fc.frame["month_id"].to_numpy(), sorted(months))
        point = np.where(hit, fc.point * 30 + 20, fc.point)
        samples = np.where(hit[:, None], fc.samples * 30 + 20, fc.samples)
        write_forecast(Forecast(fc.frame, point, samples, fc.unit_column), path, metadata=meta)


def _jsonl(settings: Settings) -> list[dict]:
    path = settings.state_dir / "alerts.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_bad_recent_forecasts_fire_both_rules_once(hist: History):
    settings = hist.settings()
    _spoil(settings, "small_tree", {498, 499, 500})
    result = online_eval(settings)
    a = result.model("small_tree").assessment
    assert a is not None and a.worse_than_baseline and a.beyond_band
    assert a.band.upper is not None and a.score is not None and a.score > a.band.upper
    by_rule = {x.details["rule"]: x for x in result.alerts}
    assert set(by_rule) == {"baseline", "band"}
    assert by_rule["baseline"].severity.value == "ERROR"
    assert by_rule["band"].severity.value == "WARNING"
    for alert in result.alerts:
        assert alert.source == "online_eval" and alert.offender == "small_tree"
    assert "worse than baseline" in by_rule["baseline"].message
    assert "historical band" in by_rule["band"].message
    logged = [x for x in _jsonl(settings) if x["source"] == "online_eval"]
    assert len(logged) == 2 and result.delivery and result.delivery["delivered"]
    summary = json.loads((settings.state_dir / ONLINE_DIR / "summary.json").read_text())
    assert len(summary["alerts"]) == 2 and summary["digest"] == result.digest
    # the same inputs again: same numbers, alerts not delivered twice
    again = online_eval(settings)
    assert again.digest == result.digest and len(again.alerts) == 2
    assert again.delivery == {"delivered": False, "reason": again.delivery["reason"]}
    assert len([x for x in _jsonl(settings) if x["source"] == "online_eval"]) == 2


def test_band_rule_alone_with_a_lenient_baseline_tolerance(hist: History, tmp_path: Path):
    lenient = hist.copy(tmp_path / "lenient",
                        CONFIG + "baseline_tolerance = 100.0\nband_sd = 2.0\n")
    settings = lenient.settings()
    assert settings.qa.online.baseline_tolerance == 100.0
    _spoil(settings, "small_tree", {498, 499, 500})
    result = online_eval(settings, deliver=False)
    assert [x.details["rule"] for x in result.alerts] == ["band"]


def test_baseline_rule_alone_when_the_model_was_always_bad(hist: History, tmp_path: Path):
    # always bad: its own history is as bad, so a wide band stays quiet; the baseline is not
    # (6 sd: in the small demo world months 498-500 are quieter than the earlier ones, so
    # the always-inflated forecast's msle sits ~4.5 sd above its own band's mean there)
    wide = hist.copy(tmp_path / "wide", CONFIG + "band_sd = 6.0\n")
    settings = wide.settings()
    _spoil(settings, "small_tree", None)
    result = online_eval(settings, deliver=False)
    a = result.model("small_tree").assessment
    assert a is not None and a.worse_than_baseline and not a.beyond_band
    assert [x.details["rule"] for x in result.alerts] == ["baseline"]
    assert result.alerts[0].details["baselines"]


def test_recomputing_is_idempotent(hist: History):
    settings = hist.settings()
    first = online_eval(settings, deliver=False)
    tables = {f: pd.read_parquet(settings.state_dir / ONLINE_DIR / f)
              for f in ("scores.parquet", "cells.parquet")}
    summary = json.loads((settings.state_dir / ONLINE_DIR / "summary.json").read_text())
    second = online_eval(settings, deliver=False)
    assert second.digest == first.digest
    for name, table in tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(settings.state_dir / ONLINE_DIR / name),
                                      table, check_exact=True)
    again = json.loads((settings.state_dir / ONLINE_DIR / "summary.json").read_text())
    summary.pop("computed_at")
    again.pop("computed_at")
    assert again == summary


def test_no_forecast_run_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    settings = load_settings(state_dir=tmp_path / "empty")
    with pytest.raises(InputError, match="no stored forecast run"):
        online_eval(settings)


def test_two_snapshots_of_one_level_are_refused(hist: History):
    settings = hist.settings()
    with pytest.raises(InputError, match="two snapshots given for level cm"):
        online_eval(settings, snapshot=[hist.snapshots[483], hist.snapshots[FINAL]])
