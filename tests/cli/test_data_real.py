"""The real VIEWS / semi-synthetic files import with the documented counts and totals."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.shared_data


def test_views_fat002_cm(cli, shared_data):
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert res.code == 0, res.err
    m = res.json()["manifest"]
    assert m["rows"] == 77_945
    assert m["units"] == 213
    assert (m["first_month"], m["last_month"]) == (121, 535)
    assert m["totals"] == {"ged_sb": 2_227_220}
    assert m["source"]["file_sha256"] == (
        "ff2332c62fa07917fc1abd35e6f37afa516b20ff75c92c7320fb23a5f261b7b5"
    )
    again = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert again.json()["created"] is False and again.json()["snapshot"] == m["id"]


def test_views2020_cm_three_counts(cli, shared_data):
    path = shared_data / "views_ged_cm" / "views2020_ged_cm.parquet"
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert res.code == 0, res.err
    m = res.json()["manifest"]
    assert m["rows"] == 72_671 and (m["first_month"], m["last_month"]) == (108, 488)
    assert m["totals"]["ged_sb"] == 1_190_496
    assert m["totals"]["ged_ns"] == 180_210
    assert m["totals"]["ged_os"] == 805_939


def test_semisynthetic_pgm_small_and_full(cli, shared_data):
    small = shared_data / "pgm_semisynthetic" / "pgm_ged_sb_small.parquet"
    res = cli("data", "import", "panel", str(small), "--level", "pgm", "--json")
    assert res.code == 0, res.err
    m = res.json()["manifest"]
    assert m["rows"] == 327_850 and m["units"] == 790 and m["totals"] == {"ged_sb": 438_086}

    full = shared_data / "pgm_semisynthetic" / "pgm_ged_sb.parquet"
    res = cli("data", "import", "panel", str(full), "--level", "pgm", "--json")
    assert res.code == 0, res.err
    m = res.json()["manifest"]
    assert m["rows"] == 5_440_650
    assert m["units"] == 13_110
    assert (m["first_month"], m["last_month"]) == (121, 535)
    assert m["totals"] == {"ged_sb": 1_755_451}
    assert "country_id" in m["columns"]


def test_list_and_show(cli, shared_data):
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    snap = cli("data", "import", "panel", str(path), "--level", "cm", "--json").json()["snapshot"]
    listed = cli("data", "list", "--json").json()["snapshots"]
    assert [s["id"] for s in listed] == [snap]
    shown = cli("data", "show", snap[:7], "--json").json()
    assert shown["manifest"]["id"] == snap
    s = shown["summary"]["counts"]["ged_sb"]
    assert s["total"] == 2_227_220
    assert 0.8 < s["zero_share"] < 0.9
    text = cli("data", "show", snap)
    assert text.code == 0 and "Validation report (PASS)" in text.out
    missing = cli("data", "show", "cm-ffff")
    assert missing.code == 2 and "data list" in missing.err
