"""A scripted forecasting history on the demo world for the online-evaluation tests.

The demo world is prefix-stable (``--last-month M`` gives the same months <= M for every M),
so importing it with M = 480, 481, ... plays the part of data arriving month by month. After
each import, ``ewspipe forecast`` runs on that snapshot (origins 480..485); the origin-485
forecast is run twice (the re-run supersedes the first); finally the actuals through 500
arrive (an import with M = 500, no forecast).

Import the ``history`` fixture into a test module (``from online_history import history``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from ewspipe.cli.main import main
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings

__all__ = ["CONFIG", "COUNTRIES", "FINAL", "ORIGINS", "History", "history", "write_workspace"]

ORIGINS = tuple(range(480, 486))
FINAL = 500
COUNTRIES = 30

SMALL_TREE = """
name = "small_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A quick LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
log_target = true
seed = 7

[hyperparameters.learner_params]
n_estimators = 10
"""

SIMPLE = """
name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A simple model."
features = []
"""

ENSEMBLE = """
name = "calm_chorus"
level = "cm"
target = "ged_sb"
members = ["small_tree", "year_average"]
aggregation = "mean"
status = "shadow"
owner = "tests"
description = "Mean of the tree and the yearly average."
"""

CONFIG = """
[workspace]
state_dir = "state"

[tracking]
enabled = false

[qa.online]
window_months = 3
"""


def write_workspace(root: Path, config: str = CONFIG) -> Path:
    """Models zero_line, last_value (baselines), small_tree (deployed), year_average (shadow)
    and the shadow ensemble calm_chorus; returns the ewspipe.toml path."""
    models = root / "models"
    models.mkdir(parents=True)
    (models / "small_tree.toml").write_text(SMALL_TREE)
    for name, algorithm, status in (("zero_line", "zero", "baseline"),
                                    ("last_value", "locf", "baseline"),
                                    ("year_average", "average", "shadow")):
        (models / f"{name}.toml").write_text(SIMPLE.format(name=name, algorithm=algorithm,
                                                           status=status))
    (root / "ensembles").mkdir()
    (root / "ensembles" / "calm_chorus.toml").write_text(ENSEMBLE)
    (root / "ewspipe.toml").write_text(config)
    return root / "ewspipe.toml"


@dataclass
class History:
    root: Path
    config: Path
    snapshots: dict[int, str]  # last month -> snapshot id
    runs: dict[int, str]  # origin -> run id (the newest at that origin)
    superseded: str  # the first origin-485 run

    def settings(self) -> Settings:
        return load_settings(self.config)

    def copy(self, dest: Path, config: str | None = None) -> History:
        """The same history in another folder (to tamper with), optionally other settings."""
        shutil.copytree(self.root, dest)
        cfg = dest / "ewspipe.toml"
        if config is not None:
            cfg.write_text(config)
        return History(dest, cfg, dict(self.snapshots), dict(self.runs), self.superseded)


def cli(config: Path, *args: str) -> None:
    code = main(["--config", str(config), *args])
    assert code == 0, f"ewspipe {' '.join(args)} exited {code}"


def import_demo(config: Path, month: int) -> str:
    """Import the demo world through ``month``; the cm snapshot id."""
    cli(config, "data", "demo", "--countries", str(COUNTRIES), "--pgm-cells", "50",
        "--last-month", str(month))
    store = SnapshotStore(load_settings(config).snapshot_dir)
    return next(m.id for m in store.list() if m.level == "cm" and m.last_month == month)


def forecast(config: Path, snapshot: str) -> str:
    """``ewspipe forecast`` on that cm snapshot (given explicitly: two imports in the same
    second tie on imported_at); the new run's id."""
    runs = load_settings(config).runs_dir
    before = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    cli(config, "forecast", "--level", "cm", "--snapshot", snapshot)
    (new,) = {p.name for p in runs.iterdir() if not p.name.startswith(".")} - before
    assert json.loads((runs / new / "run.json").read_text())["kind"] == "forecast"
    return new


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        root = tmp_path_factory.mktemp("online_history")
        config = write_workspace(root)
        snapshots: dict[int, str] = {}
        runs: dict[int, str] = {}
        for month in ORIGINS:
            snapshots[month] = import_demo(config, month)
            runs[month] = forecast(config, snapshots[month])
        superseded = runs[ORIGINS[-1]]
        runs[ORIGINS[-1]] = forecast(config, snapshots[ORIGINS[-1]])  # a re-run
        snapshots[FINAL] = import_demo(config, FINAL)
    return History(root, config, snapshots, runs, superseded)
