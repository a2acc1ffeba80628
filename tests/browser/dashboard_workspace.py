"""A workspace with something in every dashboard panel, built with the real commands.

The monthly-run test workspace (tests/flows/monthly_workspace.py) on a larger grid (so the
cm map has several countries), plus a zero baseline and a shadow model that draws samples
(for the forecast interval). Then, in order: the demo world through month 516 and an
``ewspipe forecast`` from it; the demo world through 520; a calibration ``ewspipe
evaluate``; the monthly ``ewspipe run``; ``ewspipe online-eval`` (the 516 forecast scored on
517..520); and the workspace's git repository released once through the real release code
(development promoted to production, tag and ledger entry), then one more commit on
development with its staging report in the ledger.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.flows import monthly_workspace

from ewspipe.alerts.log import AlertLog
from ewspipe.alerts.records import Alert, Severity
from ewspipe.cli.main import main
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import load_settings

__all__ = ["CM_COUNTRIES_WITH_CELLS", "PGM_CELLS", "build_dashboard_workspace"]

PGM_CELLS = 600
CM_COUNTRIES_WITH_CELLS = 5  # the demo world gives one country per ~120 cells

BASELINE = """
name = "zero_line"
level = "cm"
target = "ged_sb"
algorithm = "zero"
status = "baseline"
owner = "tests"
description = "Predicts no fatalities."
features = []
"""

DRAWS = """
name = "past_draws"
level = "cm"
target = "ged_sb"
algorithm = "conflictology"
status = "shadow"
owner = "tests"
description = "Draws from each country's last 12 months."
features = []

[hyperparameters]
w = 12
n_samples = 50
seed = 3
"""


def ewspipe(config: Path, *args: str, ok: tuple[int, ...] = (0,)) -> None:
    code = main(["--config", str(config), *args])
    assert code in ok, f"ewspipe {' '.join(args)} exited {code}"


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@example.org",
           "GIT_COMMITTER_NAME": "tests", "GIT_COMMITTER_EMAIL": "tests@example.org"}
    out = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def _release(config: Path) -> str:
    """The first release through the real release code (development promoted to production),
    then one more commit on development and a staging report for it; returns the tag."""
    tag = str(monthly_workspace.release_workspace(config, load_settings(config).state_dir))
    root = config.parent
    _git(root, "checkout", "-q", "development")
    (root / "models" / "zero_line.toml").write_text(BASELINE.replace("no fatalities",
                                                                     "zero fatalities"))
    _git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-am",
         "docs: describe the baseline")
    from ewspipe.release.ledger import Ledger

    gates = [{"gate": "sync", "status": "PASS", "summary": "development contains production"},
             {"gate": "tests", "status": "PASS", "summary": "the candidate's tests passed"},
             {"gate": "performance", "status": "WARN",
              "summary": "small_chorus msle +0.8% (tolerance 1%)"}]
    Ledger.open(load_settings(config)).record_staging({
        "candidate_commit": _git(root, "rev-parse", "HEAD"), "candidate_ref": "development",
        "production_commit": _git(root, "rev-parse", "production"), "snapshots": {},
        "gates": gates, "started_at": "2026-01-05T06:00:00Z",
        "finished_at": "2026-01-05T06:04:00Z", "json_path": "", "html_path": ""})
    return tag


def build_dashboard_workspace(root: Path, *, pgm_cells: int = PGM_CELLS,
                              countries: int = 30) -> Path:
    """Build it below ``root``; returns ewspipe.toml. (Larger worlds make the README
    screenshot: ``pgm_cells=3000, countries=120``.)"""
    config = monthly_workspace.write_monthly_workspace(root)
    config.write_text(config.read_text().replace("pgm_cells = 100", f"pgm_cells = {pgm_cells}")
                      .replace("countries = 30", f"countries = {countries}"))
    (root / "models" / "zero_line.toml").write_text(BASELINE)
    (root / "models" / "past_draws.toml").write_text(DRAWS)
    ewspipe(config, "data", "demo", "--last-month", "516")
    store = SnapshotStore(load_settings(config).snapshot_dir)
    early = next(m.id for m in store.list() if m.level == "cm" and m.last_month == 516)
    ewspipe(config, "forecast", "--level", "cm", "--snapshot", early)
    ewspipe(config, "data", "demo")
    ewspipe(config, "evaluate", "--run-type", "calibration", "--level", "cm")
    ewspipe(config, "run", "--quiet")
    ewspipe(config, "online-eval", ok=(0, 1))  # 1: a deployed model alerted
    # the clean demo world raises reconciliation warnings only; the alert feed groups alerts by
    # kind, so record one more kind as an import's drift check would
    AlertLog.in_state_dir(load_settings(config).state_dir).append(Alert(
        source="drift.ks_drift", severity=Severity.WARNING, offender="global",
        message="ks_drift on ged_sb at global: value 150 > threshold 100 (test month 517)"))
    _release(config)
    return config
