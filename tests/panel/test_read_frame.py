"""`read_frame` gives exactly what `pq.read_table(...).to_pandas()` gives, in bounded memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ewspipe.panel.snapshot import read_frame


def _frame(n: int = 1_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "month_id": np.repeat(np.arange(121, 121 + n // 10, dtype=np.int64), 10),
        "priogrid_gid": np.tile(np.arange(10, dtype=np.int32), n // 10),
        "ged_sb": rng.poisson(0.5, n).astype(np.int64),
        "share": rng.random(n),
        "hot": rng.random(n) < 0.1,
    })


def _same(path) -> pd.DataFrame:
    got = read_frame(path)
    pd.testing.assert_frame_equal(got, pq.read_table(path).to_pandas(), check_index_type=True)
    return got


@pytest.mark.parametrize("row_group_size", [1_000, 333, 7])
def test_numeric_files_are_read_row_group_by_row_group_equal(tmp_path, monkeypatch,
                                                             row_group_size):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pandas(_frame(), preserve_index=False), path,
                   row_group_size=row_group_size)
    want = pq.read_table(path).to_pandas()

    def whole_table(*args, **kwargs):
        raise AssertionError("the whole table was read at once")

    monkeypatch.setattr(pq, "read_table", whole_table)
    got = read_frame(path)
    pd.testing.assert_frame_equal(got, want, check_index_type=True)
    assert [str(t) for t in got.dtypes] == ["int64", "int32", "int64", "float64", "bool"]


@pytest.mark.parametrize("case", ["nulls", "strings", "index", "no_stats", "empty"])
def test_other_files_take_the_whole_table_path_with_the_same_result(tmp_path, case):
    frame = _frame()
    path = tmp_path / "data.parquet"
    kwargs = {}
    if case == "nulls":  # an integer column with a null becomes float64 NaN in pandas
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(2, "ged_sb", pa.array([None, *frame["ged_sb"][1:]],
                                                       type=pa.int64()))
    elif case == "strings":
        table = pa.Table.from_pandas(frame.assign(name="x"), preserve_index=False)
    elif case == "index":
        table = pa.Table.from_pandas(frame.set_index("month_id"))
    elif case == "no_stats":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        kwargs["write_statistics"] = False
    else:
        table = pa.Table.from_pandas(frame.iloc[:0], preserve_index=False)
    pq.write_table(table, path, row_group_size=100, **kwargs)
    _same(path)


def test_a_trailing_delimiter_on_every_row_reads_as_written(tmp_path):
    """Was read as an implicit index: every column shifted one to the right."""
    from ewspipe.panel.sources.table import read_table

    path = tmp_path / "trailing.csv"
    path.write_text("month_id,country_id,ged_sb\n121,1,0,\n122,1,3,\n")
    frame = read_table(path)
    assert list(frame.columns) == ["month_id", "country_id", "ged_sb"]
    assert frame.to_dict("list") == {"month_id": [121, 122], "country_id": [1, 1],
                                     "ged_sb": [0, 3]}
