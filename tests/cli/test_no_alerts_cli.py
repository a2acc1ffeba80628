"""`--no-alerts` on every command that delivers alerts: the alarms are still reported (and
recorded where they belong: the manifest's drift, run.json), but nothing reaches the alert
log or the sinks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "flows" / "monthly_workspace.py"
_spec = importlib.util.spec_from_file_location("monthly_workspace_no_alerts", _path)
assert _spec is not None and _spec.loader is not None
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)

SYRIA = ("ucdp_ged_event_samples", "events", "ged_syria_2016_2019_events.parquet")


def test_data_demo_without_alerts_records_none(cli, state_dir: Path):
    quiet = cli("data", "demo", "--countries", "20", "--pgm-cells", "50", "--last-month", "520",
                "--no-alerts", "--json")
    assert quiet.code == 0, quiet.err
    assert "drift" in quiet.json()["cm"]  # still drift-checked, only not delivered
    assert not (state_dir / "alerts.jsonl").exists()
    assert cli("alerts", "list", "--json").json()["count"] == 0


def test_data_import_ged_without_alerts_records_none(cli, shared_data, state_dir: Path,
                                                     tmp_path: Path):
    events = str(shared_data.joinpath(*SYRIA))
    res = cli("data", "import", "ged", events, "--no-alerts", "--json")
    assert res.code == 0, res.err
    assert not (state_dir / "alerts.jsonl").exists()
    # the control: the same import into a fresh state folder delivers its drift alarm
    other = tmp_path / "other"
    assert cli("--state-dir", str(other), "data", "import", "ged", events, "--json").code == 0
    assert (other / "alerts.jsonl").read_text().strip()


def test_run_without_alerts_counts_but_delivers_none(cli, tmp_path: Path):
    cfg = str(mw.write_monthly_workspace(tmp_path / "ws"))
    state = tmp_path / "ws" / "state"
    assert cli("--config", cfg, "data", "demo", "--no-alerts", "--json").code == 0
    res = cli("--config", cfg, "run", "--no-alerts", "-q", "--json")
    assert res.code in (0, 1), res.err
    alerts = res.json()["alerts"]
    assert alerts["count"] > 0  # the demo world raises some: counted in the record
    assert alerts["delivery"] == {"delivered": False,
                                  "reason": "not asked to deliver (--no-alerts)"}
    assert not list(state.rglob("alerts.jsonl"))
    assert cli("--config", cfg, "alerts", "list", "--env", "development",
               "--json").json()["count"] == 0
    assert "(not delivered: --no-alerts)" in cli("--config", cfg, "run", "-q",
                                                 "--no-alerts").out


def test_a_publishing_run_always_delivers(cli, tmp_path: Path):
    cfg = str(mw.write_monthly_workspace(tmp_path / "ws"))
    res = cli("--config", cfg, "run", "--env", "production", "--no-alerts", "--json")
    assert res.code == 2
    error = res.json()["error"]
    assert error.startswith("option --no-alerts:") and "always delivers its alerts" in error
