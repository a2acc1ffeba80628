"""The pyfunc flavour of a registered version: the stored forecast of the run, served.

``mlflow.pyfunc.load_model("models:/<name>@production").predict(frame)`` returns rows of the
forecast that the version's run stored (``origin``, ``step``, ``month_id``, the unit column,
``point`` and, where cheap, ``samples``: raw counts, exactly as stored). It does not refit or
predict anything: training on new data is ewspipe's monthly run, not MLflow's. So the
registered object is what the release forecast, servable by any MLflow client; its
provenance (config hash, snapshot, code fingerprint, run) is the version's tags and the
``metadata`` of its MLmodel file.

This module imports MLflow at import time: import it only where MLflow is needed
(:mod:`ewspipe.store.tracking` does, lazily). Loading a saved model needs ewspipe installed
(the model class is this module's).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pyarrow.parquet as pq

from ewspipe import __version__
from ewspipe.models.forecast import INDEX_COLUMNS
from ewspipe.store.predictions import read_forecast_metadata, write_table

__all__ = ["FORECAST_ARTIFACT", "MAX_SAMPLE_VALUES", "StoredForecastModel", "log_forecast_model",
           "save_forecast_model"]

FORECAST_ARTIFACT = "forecast"
MAX_SAMPLE_VALUES = 5_000_000  # above this many draws only the point forecast is kept (~40 MB)
_MODEL_PATH = "pyfunc"  # a version's model folder among its run's artifacts


class StoredForecastModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Serves the stored forecast of one ewspipe run of one model or ensemble.

    ``predict(frame)``: ``frame`` None or empty returns every row; otherwise it names the rows
    wanted by any of the columns ``origin``, ``step``, ``month_id`` and the unit column
    (``country_id`` or ``priogrid_gid``), and the matching stored rows come back in the
    stored order (a key with no forecast returns nothing). Values are the stored ones,
    unchanged; retraining lives in ewspipe (``ewspipe run``), not in MLflow."""

    def load_context(self, context: Any) -> None:
        path = context.artifacts[FORECAST_ARTIFACT]
        self._unit = str(read_forecast_metadata(Path(path))["unit_column"])
        self._table = pd.read_parquet(path)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        table = self._table
        if isinstance(model_input, Mapping):  # {"country_id": [57, 245]} as well
            model_input = pd.DataFrame(model_input)
        if model_input is None or len(model_input) == 0:
            return table.copy()
        if not isinstance(model_input, pd.DataFrame):
            raise TypeError(f"predict takes a pandas DataFrame, not {type(model_input).__name__}")
        known = (*INDEX_COLUMNS, self._unit)
        keys = [c for c in known if c in model_input.columns]
        if not keys:
            raise ValueError(f"predict: the input names no known column; give any of "
                             f"{', '.join(known)} (or None for the whole forecast)")
        try:
            wanted = model_input[keys].astype("int64").drop_duplicates()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"predict: columns {keys} must hold whole numbers ({exc})") from None
        rows = table[keys].reset_index().merge(wanted, on=keys)["index"].sort_values()
        return table.loc[rows.to_numpy()].reset_index(drop=True)


@contextlib.contextmanager
def _quiet_save() -> Iterator[None]:
    """MLflow warns on every save about pickling (the class is pickled by reference), a
    missing signature (inputs are optional key columns: no fixed schema) and type hints."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _forecast_copy(source: Path, target: Path) -> bool:
    """The stored forecast file rewritten to ``target``; True if its samples are kept (a
    large forecast's draws are not even read)."""
    meta = read_forecast_metadata(source)
    stored = pq.ParquetFile(source)
    keep = stored.metadata.num_rows * int(meta.get("n_samples", 1)) <= MAX_SAMPLE_VALUES
    names = stored.schema_arrow.names
    table = stored.read(columns=names if keep else [c for c in names if c != "samples"])
    write_table(table, target, str(meta["unit_column"]))
    return keep


def save_forecast_model(directory: Path, forecast: Path, *,
                        metadata: Mapping[str, str]) -> Path:
    """A pyfunc model in ``directory`` (which must not exist) serving the forecast file
    ``forecast`` (the format of :mod:`ewspipe.store.predictions`); ``metadata`` (the
    version's tags) goes into its MLmodel file."""
    with tempfile.TemporaryDirectory(prefix="ewspipe-pyfunc-") as tmp:
        table = Path(tmp) / "forecast.parquet"
        samples = _forecast_copy(forecast, table)
        with _quiet_save():
            mlflow.pyfunc.save_model(
                str(directory), python_model=StoredForecastModel(),
                artifacts={FORECAST_ARTIFACT: str(table)},
                pip_requirements=[f"ewspipe=={__version__}", "pandas", "pyarrow"],
                metadata={**metadata, "ewspipe.serves": "stored forecast",
                          "ewspipe.samples": str(samples).lower()})
    return directory


def log_forecast_model(client: Any, run_id: str | None, forecast: Path, *,
                       metadata: Mapping[str, str], spare: Path | None, name: str) -> str:
    """Save the pyfunc model of ``forecast`` and return the URI a model version's source
    should be: among the artifacts of the MLflow run ``run_id`` (``pyfunc/<name>``), or,
    for a version registered without a run, a new folder under ``spare``."""
    if run_id is None:
        if spare is None:
            raise ValueError(f"{name}: a pyfunc model without an MLflow run needs a folder")
        folder = spare / name / uuid.uuid4().hex
        folder.parent.mkdir(parents=True, exist_ok=True)
        return save_forecast_model(folder, forecast, metadata=metadata).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="ewspipe-pyfunc-") as tmp:
        save_forecast_model(Path(tmp) / "model", forecast, metadata=metadata)
        path = f"{_MODEL_PATH}/{name}"
        client.log_artifacts(run_id, str(Path(tmp) / "model"), path)
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
