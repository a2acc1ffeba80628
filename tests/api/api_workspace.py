"""A real workspace behind the API, built once per session: the small monthly workspace
(tests/flows/monthly_workspace.py) made a released product repository (its
``release_workspace``: git, promoted to production, so production may publish), with a
development run, a production run (which publishes), a calibration evaluation and a stored
pgm run with samples (for quantiles; no monthly-run record, so it may not be published).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.flows import monthly_workspace

from ewspipe.cli.main import main
from ewspipe.models.forecast import Forecast
from ewspipe.settings import Settings, load_settings
from ewspipe.store.prediction_store import PredictionStore

TOKEN_ENV = "EWSPIPE_API_TOKEN"
SAMPLED_RUN = "m520-sampled"
SAMPLED_MODEL = "sampled_grid"
N_SAMPLES = 40


@dataclass
class Workspace:
    config: Path
    state: Path
    settings: Settings
    dev_run: dict
    prod_run: dict
    evaluation: dict
    tag: str = ""

    def cli(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(self.config), "--state-dir", str(self.state), *args])
        return code, out.getvalue()

    def store(self, env: str) -> PredictionStore:
        return PredictionStore(self.state / env / "predictions")


def _run_json(ws: Workspace, *args: str) -> dict:
    import json

    code, out = ws.cli(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def _sampled_forecast(store: PredictionStore) -> None:
    """A pgm forecast with samples, stored as its own run (no monthly-run record)."""
    rng = np.random.default_rng(7)
    cells = np.arange(1, 51)
    steps = np.arange(1, 37)
    frame = pd.DataFrame({"origin": 520, "step": np.repeat(steps, len(cells)),
                          "month_id": 520 + np.repeat(steps, len(cells)),
                          "priogrid_gid": np.tile(cells, len(steps))})
    draws = rng.gamma(0.5, 3.0, size=(len(frame), N_SAMPLES))
    store.write(Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                         unit_column="priogrid_gid"),
                level="pgm", run=SAMPLED_RUN, model=SAMPLED_MODEL,
                metadata={"target": "ged_sb", "status": "deployed", "kind": "model"})


def build_workspace(root: Path) -> Workspace:
    """The whole workspace below ``root`` (about 15 s: git, a release, three runs)."""
    config = monthly_workspace.write_monthly_workspace(root / "ws")
    state = root / "ws" / "state"
    ws = Workspace(config, state, load_settings(config, state_dir=state), {}, {}, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        mp.delenv(TOKEN_ENV, raising=False)
        ws.tag = monthly_workspace.release_workspace(config, state)
        ws.dev_run = _run_json(ws, "run", "--env", "development", "--quiet")
        ws.prod_run = _run_json(ws, "run", "--env", "production", "--quiet")
        ws.evaluation = _run_json(ws, "evaluate", "--run-type", "calibration", "--model",
                                  "last_value", "--model", "small_ridge")
    assert [p["level"] for p in ws.prod_run["outputs"]["published"]] == ["cm", "pgm"]
    _sampled_forecast(ws.store("production"))
    return ws
