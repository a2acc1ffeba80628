"""`ewspipe evaluate` and `ewspipe forecast` hold every forecast against the monthly QA's
plausibility ceiling: an offender is recorded, printed and alerted through the sinks.

Cheap set-up: a 6-country panel in which one country's deaths grow 2 % a month up to month
444 and then stay flat, a ridge that learns the growth, and ``[qa] max_forecast_factor = 1.5``
in the workspace: the ridge extrapolates the growth beyond 1.5 x the largest count ever
observed (its own cap allows up to 2 x the largest training target), the LOCF baseline
cannot.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

RIDGE = """
name = "growth_ridge"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A ridge that extrapolates growth."
features = ["mmean(log1p(ged_sb), 3)"]

[hyperparameters]
learner = "ridge"
log_target = true
seed = 7
"""

LOCF = """
name = "last_value"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "baseline"
owner = "tests"
description = "Last observed value."
features = []
"""

CHORUS = """
name = "growth_chorus"
level = "cm"
target = "ged_sb"
members = ["growth_ridge"]
aggregation = "mean"
status = "deployed"
owner = "tests"
description = "The ridge alone."
"""

PEAK_MONTH, LAST_MONTH = 444, 500


def _panel() -> pd.DataFrame:
    months = np.arange(121, LAST_MONTH + 1)
    rng = np.random.default_rng(3)
    rows = []
    for country in range(1, 7):
        if country == 1:
            grown = 10.0 * 1.02 ** (np.minimum(months, PEAK_MONTH) - 121)
            values = np.round(grown)
        else:
            values = rng.poisson(2.0, len(months)) * (rng.random(len(months)) < 0.3)
        rows.append(pd.DataFrame({"month_id": months, "country_id": country,
                                  "ged_sb": values.astype(np.int64),
                                  "country_name": "Ukraine" if country == 1 else "Land",
                                  "isoab": "UKR" if country == 1 else "LND"}))
    return pd.concat(rows, ignore_index=True)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "models" / "growth_ridge.toml").write_text(RIDGE)
    (tmp_path / "models" / "last_value.toml").write_text(LOCF)
    (tmp_path / "ensembles" / "growth_chorus.toml").write_text(CHORUS)
    (tmp_path / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n\n'
        "[qa]\nmax_forecast_factor = 1.5\n\n"
        '[alerts.webhook]\nenabled = true\nurl_env = "TEST_PLAUSIBLE_HOOK"\nretries = 0\n')
    _panel().to_parquet(tmp_path / "panel.parquet", index=False)
    return tmp_path


def test_evaluate_and_forecast_flag_and_alert_implausible_forecasts(
        workspace: Path, cli, state_dir: Path, hook, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = hook
    monkeypatch.setenv("TEST_PLAUSIBLE_HOOK", url)

    def run(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert run("data", "import", "panel", str(workspace / "panel.parquet"),
               "--level", "cm").code == 0
    peak = float(_panel()["ged_sb"].max())
    ceiling = 1.5 * peak

    res = run("evaluate", "--run-type", "calibration", "--json")
    assert res.code == 0, res.err  # the run completes and is stored; the alert says what is wrong
    doc = res.json()
    found = {f["model"]: f for f in doc["implausible"]}
    assert set(found) == {"growth_ridge", "growth_chorus"}  # not the LOCF baseline
    ridge = found["growth_ridge"]
    assert ridge["ceiling"] == pytest.approx(ceiling)
    assert ridge["value"] > ceiling and ridge["unit"] == 1 and ridge["rows_above"] >= 1
    assert ridge["month_id"] == ridge["origin"] + ridge["step"]
    assert found["growth_chorus"]["kind"] == "ensemble"
    assert doc["plausibility"]["factor"] == 1.5
    models = {m["model"]: m for m in doc["models"]}
    assert models["last_value"]["plausibility"] is None
    assert models["growth_ridge"]["plausibility"]["value"] == ridge["value"]
    # recorded in the stored run and delivered: alerts.jsonl, the log files, the webhook
    stored = json.loads((Path(doc["path"]) / "run.json").read_text())
    assert stored["implausible"] == doc["implausible"]
    alerts = [json.loads(line) for line in (state_dir / "alerts.jsonl").read_text().splitlines()]
    ours = [a for a in alerts if a["source"] == "plausibility"]
    assert {a["offender"] for a in ours} == {"growth_ridge", "growth_chorus"}
    assert all(a["severity"] == "ERROR" and a["run_id"] == doc["run_id"] for a in ours)
    assert ours[0]["threshold"] == pytest.approx(ceiling)
    assert all(" for Ukraine (UKR, 1), month " in a["message"] for a in ours)  # named
    assert "growth_ridge" in (state_dir / "logs" / "error.log").read_text()
    assert any("plausibility ceiling" in body["text"] for body in handler.received)
    # printed, in full, in the human output
    human = run("evaluate", "--run-type", "calibration")
    assert human.code == 0
    assert "IMPLAUSIBLE forecasts: 2 model(s)" in human.out
    assert f"> ceiling {ceiling:,.0f}" in human.out and "country_id 1, month" in human.out

    # a forecast run from the last month (flat at the peak since 444) extrapolates too
    res = run("forecast", "--model", "growth_ridge", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    [flagged] = doc["implausible"]
    assert flagged["model"] == "growth_ridge" and flagged["origin"] == LAST_MONTH
    assert any(a["source"] == "plausibility" for a in doc["alerts"])


def test_no_alerts_keeps_the_record_and_delivers_nothing(
        workspace: Path, cli, state_dir: Path, hook, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = hook
    monkeypatch.setenv("TEST_PLAUSIBLE_HOOK", url)

    def run(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert run("data", "import", "panel", str(workspace / "panel.parquet"), "--level", "cm",
               "--no-alerts").code == 0
    for command in (("evaluate", "--run-type", "calibration"), ("forecast",)):
        res = run(*command, "--model", "growth_ridge", "--no-alerts", "-q", "--json")
        assert res.code == 0, res.err
        doc = res.json()
        assert [f["model"] for f in doc["implausible"]] == ["growth_ridge"]
        assert any(a["source"] == "plausibility" for a in doc["alerts"])  # in run.json
        assert doc["alert_delivery"] == {"delivered": False,
                                         "reason": "not asked to deliver (--no-alerts)"}
    assert not (state_dir / "alerts.jsonl").exists()
    assert handler.received == []
