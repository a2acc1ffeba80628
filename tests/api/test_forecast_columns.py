"""The column-wise helpers of the forecast endpoint against their row-by-row meaning: unit
names equal to UnitNames.record, JSON rows equal to what the json module reads back."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from ewspipe.api.forecast_reads import with_unit_names
from ewspipe.api.json_rows import json_rows
from ewspipe.geography.names import NAME_FIELDS, UnitNames

NAMES = {"cm": UnitNames("cm", {1: "Ukraine", 2: 'Côte "d" Ivoire'}, {1: "UKR"}),
         "pgm": UnitNames("pgm", {1: "Ukraine", 2: "Chad"}, {1: "UKR"},
                          {100: 1, 101: 2, 102: 3, 7: 1})}


@pytest.mark.parametrize(("level", "unit", "ids"), [
    ("cm", "country_id", [2, 1, 5, 1, 2]),
    ("pgm", "priogrid_gid", [100, 101, 102, 103, 7, 100]),  # 103: a cell of no country
    ("pgm", "priogrid_gid", []),
])
def test_unit_names_equal_the_records(level, unit, ids):
    names = NAMES[level]
    table = pa.table({"step": pa.array(np.ones(len(ids), np.int16)),
                      unit: pa.array(ids, pa.int64()), "point": pa.array([0.5] * len(ids))})
    got = with_unit_names(table, unit, names)
    assert got.column_names == ["step", unit, *NAME_FIELDS[level], "point"]
    want = [names.record(u) for u in ids]
    for key in NAME_FIELDS[level]:
        assert got.column(key).to_pylist() == [r[key] for r in want], key
    empty = UnitNames(level)  # no names at all (a demo world without a snapshot)
    labels = with_unit_names(table, unit, empty).column("label").to_pylist()
    assert labels == [empty.label(u) for u in ids]


def test_json_rows_read_back_as_the_table():
    table = pa.table({
        "origin": pa.array([535, 535, 535], pa.int32()),
        "name": pa.array(['Côte "d" \\ Ivoire', None, "Chad"]),
        "point": pa.array(np.array([0.1, np.nan, 1e-7], np.float32)),
        "q0.5": pa.array([1 / 3, np.inf, 2.0]),
        "flag": pa.array([True, None, False]),
    })
    doc = json.loads(json_rows(table))
    assert doc[0] == {"origin": 535, "name": 'Côte "d" \\ Ivoire', "point": 0.1,
                      "q0.5": 1 / 3, "flag": True}
    assert doc[1] == {"origin": 535, "name": None, "point": None, "q0.5": None, "flag": None}
    assert np.float32(doc[2]["point"]) == np.float32(1e-7)  # float32: shortest round trip
    assert json_rows(table.slice(0, 0)) == b"[]"
    assert json_rows(pa.table({"samples": pa.array([[1.0, 2.0]])})) is None  # lists: elsewhere
    assert json_rows(pa.table({"name": pa.array(["a\nb"])})) is None  # control characters


def test_json_rows_of_constant_columns():
    table = pa.table({"month_id": pa.array([547] * 3, pa.int32()), "name": pa.nulls(3),
                      "q0.5": pa.array([0.0, 2.5, 0.0], pa.float32())})
    assert json.loads(json_rows(table)) == [{"month_id": 547, "name": None, "q0.5": v}
                                            for v in (0.0, 2.5, 0.0)]
    assert json.loads(json_rows(table.drop_columns(["q0.5"]))) == [
        {"month_id": 547, "name": None}] * 3
    nan = pa.table({"point": pa.array([0.0, np.nan, 0.0])})
    assert json.loads(json_rows(nan)) == [{"point": 0.0}, {"point": None}, {"point": 0.0}]
    one = table.slice(1, 1)
    assert json.loads(json_rows(one)) == [{"month_id": 547, "name": None, "q0.5": 2.5}]


def test_json_rows_in_parallel_blocks_equal_one_block(monkeypatch):
    from ewspipe.api import json_rows as module

    rng = np.random.default_rng(3)
    table = pa.table({"month_id": pa.array(np.full(101, 547), pa.int32()),
                      "cell": pa.array(rng.integers(1, 259_200, 101)),
                      "q0.5": pa.array(rng.gamma(0.3, 2.0, 101).astype(np.float32))})
    whole = json_rows(table, b'{"rows": ', b"}")
    monkeypatch.setattr(module, "PARALLEL_ROWS", 2)
    monkeypatch.setattr(module, "PARTS", 3)
    assert json_rows(table, b'{"rows": ', b"}") == whole
    assert len(json.loads(whole)["rows"]) == 101
