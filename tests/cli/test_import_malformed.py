"""Every malformed input exits 2 with a message naming file, column and fix; nothing is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def _good_cm() -> pd.DataFrame:
    rows = [(m, c, (m * c) % 7) for m in range(121, 133) for c in (1, 2, 3)]
    return pd.DataFrame(rows, columns=["month_id", "country_id", "ged_sb"])


def _good_pgm() -> pd.DataFrame:
    rows = [(m, g, 10, g % 3) for m in range(121, 127) for g in (1000, 1001, 1721)]
    return pd.DataFrame(rows, columns=["month_id", "priogrid_gid", "country_id", "ged_sb"])


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def _dup(df):
    return pd.concat([df, df.iloc[[4]]])


def _set(col, row, value):
    def f(df):
        df = df.copy()
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df
    return f


def _drop_row(row):
    return lambda df: df.drop(index=row)


CASES = {
    # name: (level, frame transform, suffix, expected fragments)
    "duplicate rows": ("cm", _dup, ".parquet", ["share a (month_id, country_id)", "data row"]),
    "negative count": ("cm", _set("ged_sb", 3, -4), ".csv", ["'ged_sb'", "negative", "data row 4"]),
    "nan count": ("cm", _set("ged_sb", 5, None), ".csv", ["'ged_sb'", "no value", "data row 6"]),
    "float count": ("cm", _set("ged_sb", 2, 2.5), ".csv", ["'ged_sb'", "non-integer", "2.5"]),
    "text in count": ("cm", _set("ged_sb", 7, "many"), ".csv", ["'ged_sb'", "text", "'many'"]),
    "text in month": ("cm", _set("month_id", 1, "Jan"), ".csv", ["'month_id'", "text"]),
    "inf count": ("cm", _set("ged_sb", 0, float("inf")), ".parquet", ["'ged_sb'", "infinite"]),
    "missing unit column": ("cm", lambda d: d.drop(columns="country_id"), ".csv",
                            ["'country_id'", "required column is missing"]),
    "missing month column": ("cm", lambda d: d.drop(columns="month_id"), ".parquet",
                             ["'month_id'", "required column is missing"]),
    "no count column": ("cm", lambda d: d.rename(columns={"ged_sb": "deaths"}), ".csv",
                        ["no count column", "--counts"]),
    "gap in months": ("cm", _drop_row(7), ".csv", ["gaps", "country_id=2", "123"]),
    "future months": ("cm", lambda d: d.assign(month_id=d["month_id"] + 600), ".csv",
                      ["'month_id'", "future"]),
    "years instead of month_id": ("cm", lambda d: d.assign(month_id=d["month_id"] + 1900),
                                  ".csv", ["future", "calendar years"]),
    "month below 1": ("cm", lambda d: d.assign(month_id=d["month_id"] - 200), ".csv",
                      ["'month_id'", "< 1"]),
    "negative country id": ("cm", _set("country_id", 0, -3), ".csv",
                            ["'country_id'", "impossible unit id"]),
    "missing country id": ("cm", _set("country_id", 0, None), ".csv",
                           ["'country_id'", "no value"]),
    "wrong level (pgm file as cm)": ("pgm->cm", None, ".parquet",
                                     ["'country_id'", "--level pgm"]),
    "wrong level (cm file as pgm)": ("cm->pgm", None, ".parquet",
                                     ["'priogrid_gid'", "--level cm"]),
    "priogrid id out of range": ("pgm", _set("priogrid_gid", 0, 300000), ".csv",
                                 ["'priogrid_gid'", "impossible unit id"]),
    "pgm country below -1": ("pgm", _set("country_id", 2, -5), ".csv",
                             ["'country_id'", "< -1"]),
    "boolean count": ("cm", lambda d: d.assign(ged_sb=d["ged_sb"] > 0), ".parquet",
                      ["'ged_sb'", "booleans"]),
    "duplicate column names": ("cm", lambda d: pd.concat([d, d[["ged_sb"]]], axis=1), ".csv",
                               None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_panel_rejected(cli, tmp_path, state_dir, name):
    level, transform, suffix, fragments = CASES[name]
    if level == "pgm->cm":
        df, level = _good_pgm().drop(columns="country_id"), "cm"
    elif level == "cm->pgm":
        df, level = _good_cm(), "pgm"
    else:
        base = _good_pgm() if level == "pgm" else _good_cm()
        df = transform(base)
    path = _write(df, tmp_path / f"input{suffix}")
    if name == "duplicate column names":  # pandas renames duplicate CSV headers; write by hand
        path.write_text("month_id,country_id,ged_sb,ged_sb\n121,1,0,0\n")
        fragments = ["'ged_sb'", "appears 2 times"]
    res = cli("data", "import", "panel", str(path), "--level", level)
    assert res.code == 2, res.err
    assert str(path) in res.err, res.err
    assert "Fix:" in res.err or "fix" in res.err.lower()
    for fragment in fragments:
        assert fragment in res.err, f"{fragment!r} not in:\n{res.err}"
    assert not state_dir.exists() or not any((state_dir / "snapshots").glob("*")), \
        "nothing may be written on bad input"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"month_id,country_id,ged_sb\n", "no data rows"),
        (b"PAR1\x00\x01garbage", "not a readable Parquet"),
    ],
)
def test_unreadable_files(cli, tmp_path, content, needle):
    suffix = ".parquet" if content.startswith(b"PAR1") else ".csv"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    res = cli("data", "import", "panel", str(path), "--level", "cm")
    assert res.code == 2
    assert needle in res.err and str(path) in res.err


def test_truncated_parquet(cli, tmp_path):
    good = _write(_good_cm(), tmp_path / "good.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    res = cli("data", "import", "panel", str(cut), "--level", "cm")
    assert res.code == 2 and "not a readable Parquet" in res.err


def test_missing_file_and_unknown_type(cli, tmp_path):
    res = cli("data", "import", "panel", str(tmp_path / "nope.csv"), "--level", "cm")
    assert res.code == 2 and "file not found" in res.err
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"not a table")
    res = cli("data", "import", "panel", str(odd), "--level", "cm")
    assert res.code == 2 and "unknown file type" in res.err


def test_unknown_level_and_policy(cli, tmp_path):
    path = _write(_good_cm(), tmp_path / "good.csv")
    res = cli("data", "import", "panel", str(path), "--level", "country")
    assert res.code == 2 and "--level" in res.err and "'cm'" in res.err
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--missing", "drop")
    assert res.code == 2 and "--missing" in res.err


def test_counts_option_names_missing_column(cli, tmp_path):
    path = _write(_good_cm(), tmp_path / "good.csv")
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--counts", "ged_sb,ged_ns")
    assert res.code == 2 and "'ged_ns'" in res.err and "--counts" in res.err


def test_missing_policy_zero_fills_and_records(cli, tmp_path):
    df = _set("ged_sb", 5, None)(_good_cm())
    path = _write(df, tmp_path / "holes.csv")
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--missing", "zero",
              "--allow-short", "--json")
    assert res.code == 0, res.err
    manifest = res.json()["manifest"]
    assert manifest["validation"]["filled_missing"] == {"ged_sb": 1}
    assert manifest["source"]["missing_policy"] == "zero"


def test_json_error_document(cli, tmp_path):
    path = _write(_good_cm().assign(ged_sb=-1), tmp_path / "neg.csv")
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert res.code == 2
    doc = res.json()
    assert doc["exit_code"] == 2 and "negative" in doc["error"]
