"""Fault-and-abuse cases of `data import panel`, `data import ged` and `data demo` (issue 18:
cases 7, 8, the 1-row import of case 5 and the data items of "Also").

Every case builds its hostile file small on disk (gzip bombs compress ~1000:1), runs the CLI
in-process against a state folder that already holds a snapshot, and asserts a clean refusal:
exit 2, one JSON document, the file/column/row and the fix named, a bounded message, and the
state folder byte-identical afterwards.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.abuse.harness import assert_refused, tree_digest

from ewspipe.errors import PanelError
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.sources.table import read_table

MONTHS = range(121, 161)  # 40 months: above the default minimum (steps 36 + 1)
GED_HEADER = "id,type_of_violence,best,date_start,date_end,country_id,latitude,longitude\n"
SMALL_CAP = 4 << 20  # [data] max_decompressed_bytes in the cases that test it
MAX_MESSAGE = 4_000  # a refusal never echoes a huge cell: the whole message stays short


def _panel(months: range = MONTHS, units: tuple[int, ...] = (1, 2, 3)) -> pd.DataFrame:
    rows = [(m, c, (m * c) % 7) for m in months for c in units]
    return pd.DataFrame(rows, columns=["month_id", "country_id", "ged_sb"])


def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _ged_rows(n: int = 40, best: int = 5) -> list[str]:
    """One event per month for ``n`` months from 2016-01 (Syria), ids 1001.."""
    out = []
    for i in range(n):
        day = f"{2016 + i // 12}-{i % 12 + 1:02d}-03"
        out.append(f"{1001 + i},1,{best},{day},{day},652,33.5,36.3\n")
    return out


def _ged(path: Path, rows: list[str]) -> Path:
    path.write_text(GED_HEADER + "".join(rows))
    return path


# --------------------------------------------------------------------------- the cases
# each: tmp_path -> (CLI args after the global options, substrings the message must hold)
Case = Callable[[Path], tuple[list[str], list[str]]]


def gz_bomb_cell(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"month_id,country_id,ged_sb\n121,1,")
        block = b"9" * (1 << 20)
        for _ in range(40):  # a 40 MB cell in a ~40 KB file
            fh.write(block)
        fh.write(b"\n")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "line 2", "max_line_bytes"])


def gz_bomb_size(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "big.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"month_id,country_id,ged_sb\n")
        fh.write(b"121,1,0\n" * (SMALL_CAP // 8 + 1000))
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "decompress", "max_decompressed_bytes"])


def gz_bomb_quoted_cell(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "quoted.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:  # one cell of 20 MB in 100-byte lines
        fh.write(b'month_id,country_id,ged_sb\n121,1,"')
        fh.write((b"9" * 99 + b"\n") * 200_000 + b'"\n')
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "line 2", "max_line_bytes", "quoting"])


def many_columns_csv(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "wide.csv.gz"
    header = ",".join(["month_id", "country_id", *(f"ged_{i}" for i in range(200_000))])
    with gzip.open(path, "wt") as fh:
        fh.write(header + "\n" + ",".join(["121", "1"] + ["0"] * 200_000) + "\n")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "columns", "max_columns"])


def many_columns_parquet(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "wide.parquet"
    cols = {"month_id": [121], "country_id": [1], **{f"ged_{i}": [0] for i in range(1_500)}}
    pq.write_table(pa.table(cols), path)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "1,502 columns", "max_columns"])


def parquet_rows_bomb(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "zeros.parquet"
    n = SMALL_CAP // 16  # 3 int64 columns: 1.5 x the cap once read, a few KB on disk
    pq.write_table(pa.table({c: np.zeros(n, dtype=np.int64)
                             for c in ("month_id", "country_id", "ged_sb")}), path)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "262,144 rows", "max_decompressed_bytes"])


def long_line(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "long.csv"
    path.write_bytes(b"month_id,country_id,ged_sb\n121,1,0\n122,1," + b"7" * 1_200_000 + b"\n")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "line 3", "max_line_bytes"])


def huge_text_cell(tmp: Path) -> tuple[list[str], list[str]]:
    df = _panel().astype({"ged_sb": object})
    df.loc[5, "ged_sb"] = "x" * 200_000
    path = _csv(df, tmp / "text.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "text", "data row 6", "(200,002 characters)"])


def huge_column_name(tmp: Path) -> tuple[list[str], list[str]]:
    name = "ged_" + "y" * 500_000
    path = _csv(_panel().rename(columns={"ged_sb": name}).assign(**{name: -1}), tmp / "n.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "negative", "(500,004 characters)"])


def deaths_1e15(tmp: Path) -> tuple[list[str], list[str]]:
    df = _panel()
    df.loc[7, "ged_sb"] = 10**15
    path = _csv(df, tmp / "implausible.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "plausibility", "data row 8", "max_deaths_per_row"])


def deaths_2_pow_70(tmp: Path) -> tuple[list[str], list[str]]:
    df = _panel().astype({"ged_sb": object})
    df.loc[2, "ged_sb"] = 2**70
    path = _csv(df, tmp / "overflow.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "too large", "data row 3"])


def uint64_max_parquet(tmp: Path) -> tuple[list[str], list[str]]:
    df = _panel().astype({"ged_sb": np.uint64})
    df.loc[4, "ged_sb"] = np.iinfo(np.uint64).max
    path = tmp / "uint.parquet"
    df.to_parquet(path, index=False)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "too large", "data row 5"])


def nan_counts(tmp: Path) -> tuple[list[str], list[str]]:
    df = _panel().astype({"ged_sb": float})
    df.loc[9, "ged_sb"] = np.nan
    path = _csv(df, tmp / "holes.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "no value", "data row 10", "--missing zero"])


def string_parquet(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "strings.parquet"
    _panel().astype({"ged_sb": str}).to_parquet(path, index=False)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "'ged_sb'", "stored as text", "astype('int64')"])


def symlink_loop(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "loop.csv"
    os.symlink(tmp / "loop2.csv", path)
    os.symlink(path, tmp / "loop2.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "symlink loop", "point the link"])


def broken_symlink(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "dangling.csv"
    os.symlink(tmp / "gone.csv", path)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "broken symlink", "gone.csv"])


def one_row(tmp: Path) -> tuple[list[str], list[str]]:
    path = _csv(_panel(range(121, 122), (1,)), tmp / "one.csv")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "only 1 month", "min_months", "--allow-short"])


def twelve_months(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "year.parquet"
    _panel(range(121, 133)).to_parquet(path, index=False)
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "only 12 months", "at least 37", "--allow-short"])


def truncated_gzip(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "cut.csv.gz"
    data = gzip.compress(_panel().to_csv(index=False).encode() * 20)
    path.write_bytes(data[: len(data) // 2])
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "gzip", "re-download"])


def latin1_header(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "latin1.csv"
    path.write_bytes("month_id,country_id,ged_sb,d\xe9c\n121,1,0,1\n".encode("latin-1"))
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "header", "UTF-8"])


def ged_duplicate_ids(tmp: Path) -> tuple[list[str], list[str]]:
    rows = _ged_rows()
    path = _ged(tmp / "dups.csv", [*rows, rows[3], rows[7]])
    return (["data", "import", "ged", path],
            [str(path), "'id'", "1004", "1008", "counted twice", "--duplicates drop"])


def _bad_ged_row(name: str, file: str, index: int, row: str, mentions: list[str]) -> Case:
    """A case importing the ordinary GED rows with row ``index`` replaced by ``row``."""
    def case(tmp: Path) -> tuple[list[str], list[str]]:
        rows = _ged_rows()
        rows[index] = row
        path = _ged(tmp / file, rows)
        return ["data", "import", "ged", path], [str(path), *mentions]
    case.__name__ = name
    return case


ged_end_before_start = _bad_ged_row(
    "ged_end_before_start", "backwards.csv", 5,
    "1006,1,5,2016-06-20,2016-06-02,652,33.5,36.3\n",
    ["'date_end'", "end before they start", "id=1006", "data row 6"])
ged_best_1e12 = _bad_ged_row(
    "ged_best_1e12", "huge_best.csv", 2,
    "1003,1,1000000000000,2016-03-03,2016-03-03,652,33.5,36.3\n",
    ["'best'", "plausibility", "id=1003", "max_deaths_per_row"])
ged_best_2_pow_70 = _bad_ged_row(
    "ged_best_2_pow_70", "overflow.csv", 1,
    f"1002,1,{2**70},2016-02-03,2016-02-03,652,33.5,36.3\n",
    ["'best'", "too large", "id=1002"])


def ged_month_sum_implausible(tmp: Path) -> tuple[list[str], list[str]]:
    rows = _ged_rows()
    rows += [f"{2001 + i},1,600000,2016-04-0{i + 1},2016-04-0{i + 1},652,33.5,36.3\n"
             for i in range(2)]
    path = _ged(tmp / "sum.csv", rows)
    return (["data", "import", "ged", path, "--level", "cm"],
            [str(path), "aggregated to cm", "'ged_sb'", "plausibility", "month_id=436"])


def ged_gz_bomb(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "events.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(GED_HEADER.encode() + b"1001,1,5,2016-01-03,2016-01-03,652,33.5,")
        fh.write(b"3" * (8 << 20) + b"\n")
    return (["data", "import", "ged", path], [str(path), "line 2", "max_line_bytes"])


def ged_one_event(tmp: Path) -> tuple[list[str], list[str]]:
    path = _ged(tmp / "one.csv", _ged_rows(1))
    return (["data", "import", "ged", path],
            [str(path), "only 1 month", "--allow-short"])


def ged_bad_duplicates_option(tmp: Path) -> tuple[list[str], list[str]]:
    path = _ged(tmp / "ok.csv", _ged_rows())
    return (["data", "import", "ged", path, "--duplicates", "merge"],
            ["--duplicates", "'merge'", "'drop'"])


def ged_countries_loop(tmp: Path) -> tuple[list[str], list[str]]:
    path = _ged(tmp / "ok.csv", _ged_rows())
    loop = tmp / "countries.csv"
    os.symlink(loop, loop)
    return (["data", "import", "ged", path, "--countries", loop],
            [str(loop), "symlink loop"])


def ged_string_best_parquet(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "events.parquet"
    rows = [r.rstrip("\n").split(",") for r in _ged_rows()]
    frame = pd.DataFrame(rows, columns=GED_HEADER.strip().split(","))  # every column a string
    frame.astype({c: float for c in ("latitude", "longitude")}).to_parquet(path, index=False)
    return (["data", "import", "ged", path], [str(path), "'best'", "stored as text", "astype"])


def ged_wide(tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "wide.csv"
    extra = ",".join(f"x{i}" for i in range(1_200))
    path.write_text(GED_HEADER.rstrip("\n") + "," + extra + "\n")
    return (["data", "import", "ged", path], [str(path), "1,208 columns", "max_columns"])


def demo_short(tmp: Path) -> tuple[list[str], list[str]]:
    return (["data", "demo", "--last-month", "130"],
            ["--last-month", "only 10 months", "min_months", ">= 157"])


def demo_short_setting(tmp: Path) -> tuple[list[str], list[str]]:
    """The short span comes from the settings file: the message must not blame an option."""
    config = tmp / "demo.toml"
    config.write_text("[demo]\nlast_month = 140\n")
    return (["--config", config, "data", "demo"],
            ["[demo] last_month in ewspipe.toml 140", "only 20 months", ">= 157"])


def demo_too_many_countries(tmp: Path) -> tuple[list[str], list[str]]:
    return (["data", "demo", "--countries", "5000"], ["--countries", "400"])


def demo_too_many_cells(tmp: Path) -> tuple[list[str], list[str]]:
    return (["data", "demo", "--pgm-cells", "20000"], ["--pgm-cells", "13110"])


def _pgm_parquet(tmp: Path, name: str, value: object) -> tuple[list[str], list[str]]:
    """A sorted pgm Parquet table (the streamed import) with one bad ged_sb cell."""
    df = _panel(units=(49181, 49182, 49183)).rename(columns={"country_id": "priogrid_gid"})
    df = df.astype({"ged_sb": np.uint64 if value == np.iinfo(np.uint64).max else np.int64})
    df.loc[7, "ged_sb"] = value
    path = tmp / name
    df.to_parquet(path, index=False)
    return (["data", "import", "panel", path, "--level", "pgm"],
            [str(path), "'ged_sb'", "data row 8", "priogrid_gid=49182"])


def pgm_streamed_uint64_max(tmp: Path) -> tuple[list[str], list[str]]:
    return _pgm_parquet(tmp, "uint.parquet", np.iinfo(np.uint64).max)


def pgm_streamed_negative(tmp: Path) -> tuple[list[str], list[str]]:
    return _pgm_parquet(tmp, "negative.parquet", -1)


def demo_before_first(tmp: Path) -> tuple[list[str], list[str]]:
    return (["data", "demo", "--last-month", "100"], ["--last-month", "first month"])


def demo_future(tmp: Path) -> tuple[list[str], list[str]]:
    """Refused before ~1.7 M future rows are generated, naming the option, not the data."""
    return (["data", "demo", "--last-month", "9999"], ["--last-month", "9999", "in the future"])


def demo_future_setting(tmp: Path) -> tuple[list[str], list[str]]:
    config = tmp / "demo.toml"
    config.write_text("[demo]\nlast_month = 9999\n")
    return (["--config", config, "data", "demo"],
            ["[demo] last_month in ewspipe.toml 9999", "in the future"])


def demo_before_first_setting(tmp: Path) -> tuple[list[str], list[str]]:
    config = tmp / "demo.toml"
    config.write_text("[demo]\nlast_month = 100\n")
    return (["--config", config, "data", "demo"],
            ["[demo] last_month in ewspipe.toml 100", "before the first month"])


def counts_twice(tmp: Path) -> tuple[list[str], list[str]]:
    """One column listed twice in --counts (was an internal error, exit 70)."""
    path = _csv(_panel(), tmp / "panel.csv")
    return (["data", "import", "panel", path, "--level", "cm", "--counts", "ged_sb,ged_sb"],
            ["--counts", "'ged_sb'", "more than once"])


def counts_empty(tmp: Path) -> tuple[list[str], list[str]]:
    """--counts "," names no column (was stored as a snapshot without counts, exit 0)."""
    path = _csv(_panel(), tmp / "panel.csv")
    return (["data", "import", "panel", path, "--level", "cm", "--counts", ","],
            ["--counts", "list is empty", "ged_sb"])


def csv_rows_longer_than_header(tmp: Path) -> tuple[list[str], list[str]]:
    """Every data row has one more field than the header: read as an implicit index, the
    columns would shift one to the right and the import succeed with the wrong numbers."""
    path = tmp / "shifted.csv"
    body = _panel().to_csv(index=False).splitlines()
    path.write_text("\n".join([body[0], *(f"999,{line}" for line in body[1:])]) + "\n")
    return (["data", "import", "panel", path, "--level", "cm"],
            [str(path), "more fields than the header", "name in the header"])


def ged_before_1980(tmp: Path) -> tuple[list[str], list[str]]:
    """An event before month_id 1 was blamed on an option the user never passed."""
    rows = _ged_rows()
    rows[1] = "1002,1,5,1900-01-03,1900-01-03,652,33.5,36.3\n"
    path = _ged(tmp / "old.csv", rows)
    return (["data", "import", "ged", path],
            [str(path), "'date_start'", "before 1980-01-01", "data row 2"])


def ged_countries_negative_id(tmp: Path) -> tuple[list[str], list[str]]:
    """A bad id in the countries table is the countries file's fault, not the events'."""
    path = _ged(tmp / "ok.csv", _ged_rows())
    countries = tmp / "countries.csv"
    countries.write_text("gwcode,country_id\n652,-1\n")
    return (["data", "import", "ged", path, "--countries", countries, "--level", "cm"],
            [str(countries), "'country_id'", "below 1", "data row 1"])


CASES: dict[str, Case] = {f.__name__: f for f in (
    gz_bomb_cell, gz_bomb_size, gz_bomb_quoted_cell, many_columns_csv, many_columns_parquet,
    parquet_rows_bomb, long_line,
    huge_text_cell, huge_column_name, deaths_1e15, deaths_2_pow_70, uint64_max_parquet, nan_counts,
    string_parquet, symlink_loop, broken_symlink, one_row, twelve_months, truncated_gzip,
    latin1_header, ged_duplicate_ids, ged_end_before_start, ged_best_1e12, ged_best_2_pow_70,
    ged_month_sum_implausible, ged_gz_bomb, ged_one_event, ged_bad_duplicates_option,
    ged_countries_loop, ged_string_best_parquet, ged_wide, demo_short, demo_short_setting,
    demo_too_many_countries,
    demo_too_many_cells,
    demo_before_first, pgm_streamed_uint64_max, pgm_streamed_negative,
    demo_future, demo_future_setting, demo_before_first_setting,
    counts_twice, counts_empty, csv_rows_longer_than_header, ged_before_1980,
    ged_countries_negative_id,
)}


@pytest.fixture(scope="module")
def seeded_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder holding one snapshot: a refusal must leave it byte-identical."""
    state = tmp_path_factory.mktemp("seed") / "state"
    import_frame(_panel(), "cm", SnapshotStore(state / "snapshots"), source={"kind": "test"},
                 source_name="seed")
    return state


@pytest.mark.parametrize("name", list(CASES))
def test_import_abuse_is_refused(ewspipe, tmp_path: Path, seeded_state: Path, name: str) -> None:
    state = tmp_path / "state"
    shutil.copytree(seeded_state, state)
    config = tmp_path / "ewspipe.toml"
    config.write_text(f"[data]\nmax_decompressed_bytes = {SMALL_CAP}\n")
    args, mentions = CASES[name](tmp_path)
    before = tree_digest(state)
    if args[0] == "--config":  # the case brings its own settings file
        config, args = args[1], args[2:]
    res = ewspipe("--config", config, "--state-dir", state, *args, "--json")
    doc = assert_refused(res, code=2, mentions=mentions, before=before,
                         after=tree_digest(state))
    assert len(res.out) + len(res.err) < 2 * MAX_MESSAGE, "the refusal echoes too much"
    assert len(doc["error"]) < MAX_MESSAGE
    if name.endswith("_setting"):
        assert "--last-month" not in doc["error"], "blames an option the user never passed"
    if "2_pow_70" in name or "uint64" in name:
        assert "rows have negative" not in doc["error"]


# --------------------------------------------------------------------------- the other side


def test_a_gzip_bomb_is_refused_in_constant_memory(tmp_path: Path) -> None:
    """40 MB of one cell in a 40 KB file: refused while holding only a few chunks."""
    args, _ = gz_bomb_cell(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(PanelError, match="max_line_bytes"):
            read_table(Path(args[3]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak:,} bytes"


def test_the_limits_are_settings(ewspipe, tmp_path: Path) -> None:
    """Raising [data] max_columns / max_deaths_per_row / min_months lets the same files in."""
    df = _panel()
    df.loc[0, "ged_sb"] = 10**7
    path = _csv(df, tmp_path / "big_war.csv")
    config = tmp_path / "ewspipe.toml"
    config.write_text("[data]\nmax_deaths_per_row = 100000000\nmin_months = 40\n")
    res = ewspipe("--config", config, "--state-dir", tmp_path / "state", "data", "import",
                  "panel", path, "--level", "cm", "--json")
    assert res.code == 0, res.out
    assert InputLimits().max_deaths_per_row == 1_000_000


def test_allow_short_stores_a_partial_snapshot_and_says_so(ewspipe, tmp_path: Path) -> None:
    path = _csv(_panel(range(121, 122), (1,)), tmp_path / "one.csv")
    res = ewspipe("--state-dir", tmp_path / "state", "data", "import", "panel", path,
                  "--level", "cm", "--allow-short")
    assert res.code == 0, res.err
    assert "only 1 month, below the minimum 37" in res.out


def test_duplicates_drop_keeps_the_first_row_and_names_the_ids(ewspipe, tmp_path: Path) -> None:
    rows = _ged_rows()
    path = _ged(tmp_path / "dups.csv", [*rows, rows[3], rows[7]])
    res = ewspipe("--state-dir", tmp_path / "state", "data", "import", "ged", path,
                  "--level", "cm", "--duplicates", "drop", "--json")
    assert res.code == 0, res.out
    import json

    manifest = json.loads(res.out)["cm"]["manifest"]
    assert manifest["totals"]["ged_sb"] == 5 * 40  # not 5 * 42: each id counted once
    assert manifest["source"]["dropped_duplicate_ids"] == ["1004", "1008"]
    checks = {c["name"]: c["detail"] for c in manifest["validation"]["checks"]}
    assert "1004, 1008" in checks["duplicates"]


@pytest.mark.parametrize("name", ["one_row", "ged_duplicate_ids", "demo_short"])
def test_a_refusal_in_a_fresh_workspace_creates_no_state_folder(ewspipe, tmp_path: Path,
                                                                name: str) -> None:
    state = tmp_path / "state"
    args, mentions = CASES[name](tmp_path)
    res = ewspipe("--state-dir", state, *args, "--json")
    assert_refused(res, code=2, mentions=mentions)
    assert not state.exists()
