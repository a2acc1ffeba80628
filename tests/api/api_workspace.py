"""A real workspace behind the API, built once per session: the small monthly workspace
(tests/flows/monthly_workspace.py) made a released product repository (its
``release_workspace``: git, promoted to production, so production may publish), with a
development run, a production run (which publishes), a calibration evaluation and a stored
pgm run with samples (for quantiles; no monthly-run record, so it may not be published), and
the same forecast again as a run whose partition also stores its quantile columns.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tests.flows import monthly_workspace

from ewspipe.cli.main import main
from ewspipe.models.forecast import Forecast
from ewspipe.settings import Settings, load_settings
from ewspipe.store.integrity import record_sha256
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import STORED_QUANTILES, quantile_column

TOKEN_ENV = "EWSPIPE_API_TOKEN"
SAMPLED_RUN = "m520-sampled"
SAMPLED_MODEL = "sampled_grid"
QUANTILES_RUN = "m520-quantiles"  # SAMPLED_RUN's forecast, with stored quantile columns
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

    code, out = ws.cli(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def strip_stored_quantiles(path: Path) -> None:
    """Rewrite a partition without its :data:`STORED_QUANTILES` columns and record its new
    sha256: a sample partition as versions before the stored quantiles wrote it."""
    source = pq.ParquetFile(path)
    meta = source.schema_arrow.metadata or {}
    drop = [quantile_column(level) for level in STORED_QUANTILES]
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    for i in range(source.num_row_groups):
        group = source.read_row_group(i).drop_columns(drop).replace_schema_metadata(meta)
        if writer is None:
            writer = pq.ParquetWriter(tmp, group.schema, compression="zstd")
        writer.write_table(group)
    assert writer is not None
    writer.close()
    tmp.replace(path)
    record_sha256(path)


def _sampled_forecast(store: PredictionStore) -> None:
    """A pgm forecast with samples, stored as its own run (no monthly-run record) with its
    quantile columns (QUANTILES_RUN), and again as an older version stored it, without them
    (SAMPLED_RUN)."""
    rng = np.random.default_rng(7)
    cells = np.arange(1, 51)
    steps = np.arange(1, 37)
    frame = pd.DataFrame({"origin": 520, "step": np.repeat(steps, len(cells)),
                          "month_id": 520 + np.repeat(steps, len(cells)),
                          "priogrid_gid": np.tile(cells, len(steps))})
    draws = rng.gamma(0.5, 3.0, size=(len(frame), N_SAMPLES))
    for run in (SAMPLED_RUN, QUANTILES_RUN):
        info, _ = store.write(Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                                       unit_column="priogrid_gid"),
                              level="pgm", run=run, model=SAMPLED_MODEL,
                              metadata={"target": "ged_sb", "status": "deployed",
                                        "kind": "model"})
        if run == SAMPLED_RUN:
            strip_stored_quantiles(info.path)


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
