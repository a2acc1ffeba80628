"""Stored forecast rows with the names of their units, for people and for exports.

A query returns unit ids; what a forecaster reads (and filters a spreadsheet by) is a
country's name. The names come from the snapshot the forecast was made on (recorded in the
partition's metadata), so a re-imported snapshot with other names does not rename old
forecasts; a world without names keeps its ids (the label then says "country 117").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ewspipe.geography.names import NAME_FIELDS, UnitNames, unit_names
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore

__all__ = ["NAME_FIELDS", "name_query_rows", "unit_name_columns"]



def unit_name_columns(frame: pd.DataFrame, names: UnitNames) -> pd.DataFrame:
    """``frame`` with ``NAME_FIELDS[level]`` inserted after its unit column (``country_id``
    of a cell is a nullable integer: empty for a cell without a known country)."""
    unit = "country_id" if names.level == "cm" else "priogrid_gid"
    ids, inverse = np.unique(frame[unit].to_numpy(dtype=np.int64), return_inverse=True)
    records = [names.record(int(u)) for u in ids]
    out = frame.copy()
    at = list(out.columns).index(unit) + 1
    for offset, name in enumerate(NAME_FIELDS[names.level]):
        values = [r.get(name) for r in records]
        column: pd.api.extensions.ExtensionArray | np.ndarray
        if name == "country_id":
            column = pd.array(values, dtype="Int64")[inverse]
        else:
            column = np.array(values, dtype=object)[inverse]
        out.insert(at + offset, name, column)
    return out


def name_query_rows(store: PredictionStore, settings: Settings, frame: pd.DataFrame, *,
                    level: str, model: str) -> pd.DataFrame:
    """The rows of ``store.query(level, model, ...)`` with their units' names, read from
    the snapshot the forecast was made on (the newest of the level when not recorded)."""
    snapshot = None
    if len(frame):
        recorded = store.metadata(level, str(frame["run"].iat[0]), model).get("snapshot")
        snapshot = str(recorded) if recorded else None
    return unit_name_columns(frame, unit_names(settings, level, snapshot=snapshot))
