"""`ewspipe data import ged` and `ewspipe data pull ucdp`, end to end through the CLI."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

SYRIA = ("ucdp_ged_event_samples", "events", "ged_syria_2016_2019_events.parquet")


def test_import_ged_matches_derived_tables(cli, shared_data):
    res = cli("data", "import", "ged", str(shared_data.joinpath(*SYRIA)), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    for level, rows in (("cm", 47), ("pgm", 6_909)):
        m = doc[level]["manifest"]
        assert m["rows"] == rows
        assert m["totals"] == {"ged_sb": 80_649, "ged_ns": 29_417, "ged_os": 2_271}
        assert (m["first_month"], m["last_month"]) == (433, 479)
        assert m["source"]["kind"] == "ucdp_ged" and m["source"]["events"] == 16_566


def test_import_ged_with_countries_and_one_level(cli, shared_data, tmp_path):
    table = pd.DataFrame({"gwcode": [652], "country_id": [220]})
    countries = tmp_path / "countries.csv"
    table.to_csv(countries, index=False)
    res = cli("data", "import", "ged", str(shared_data.joinpath(*SYRIA)), "--level", "cm",
              "--countries", str(countries), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert list(doc) == ["cm"]
    snap = doc["cm"]["snapshot"]
    shown = cli("data", "show", snap, "--json").json()
    assert shown["summary"]["units"] == 1
    assert doc["cm"]["manifest"]["source"]["countries_file"] == "countries.csv"


def test_import_ged_bad_inputs(cli, tmp_path, state_dir):
    events = tmp_path / "events.csv"
    events.write_text(
        "type_of_violence,best,date_start,country_id,latitude,longitude\n"
        "1,5,2020-01-03,652,33.5,36.3\n"
        "4,2,2020-01-04,652,33.5,36.3\n"
    )
    res = cli("data", "import", "ged", str(events))
    assert res.code == 2 and "type_of_violence" in res.err and str(events) in res.err
    events.write_text("type_of_violence,best,date_start,country_id,latitude\n1,5,2020-01-03,1,3\n")
    res = cli("data", "import", "ged", str(events))
    assert res.code == 2 and "longitude" in res.err
    res = cli("data", "import", "ged", str(events), "--level", "world")
    assert res.code == 2 and "--level" in res.err
    good = tmp_path / "good.csv"
    good.write_text(
        "type_of_violence,best,date_start,country_id,latitude,longitude\n"
        "1,5,2020-01-03,652,33.5,36.3\n"
    )
    unmapped = tmp_path / "countries.csv"
    unmapped.write_text("gwcode,country_id\n2,1\n")
    res = cli("data", "import", "ged", str(good), "--countries", str(unmapped))
    assert res.code == 2 and "652" in res.err
    assert not (state_dir / "snapshots").exists() or not any((state_dir / "snapshots").iterdir())


def _zip_events(shared_data: Path, served_dir: Path, name: str) -> bytes:
    events = pd.read_parquet(shared_data.joinpath(*SYRIA)).head(300)
    csv = served_dir / "ged_events.csv"
    events.to_csv(csv, index=False)
    archive = served_dir / name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv, arcname="GEDEvent_v99_1.csv")
    csv.unlink()
    return archive.read_bytes()


def test_pull_ucdp_from_local_server(cli, shared_data, served, tmp_path):
    base, root = served
    payload = _zip_events(shared_data, root, "ged991-csv.zip")
    config = tmp_path / "ewspipe.toml"
    config.write_text(f'[sources.ucdp]\nged_url = "{base}/ged{{compact}}-csv.zip"\n')
    res = cli("--config", str(config), "data", "pull", "ucdp", "--version", "99.1",
              "--allow-short", "--json")  # 10 months of events: a partial snapshot
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["download"]["sha256"] == hashlib.sha256(payload).hexdigest()
    m = doc["cm"]["manifest"]
    assert m["source"]["kind"] == "ucdp_ged_download" and m["source"]["version"] == "99.1"
    assert m["source"]["url"].endswith("/ged991-csv.zip")
    assert m["fetched_at"] == doc["download"]["fetched_at"]
    assert m["source"]["events"] == 300
    # bytes downloaded on stderr (stdout stayed one JSON document); none with -q
    size = f"{len(payload) / 1e6:,.1f} MB"
    assert f"      download ged991-csv.zip: {size} of {size} (100%) done" in res.err.splitlines()
    again = cli("--config", str(config), "data", "pull", "ucdp", "--version", "99.1",
                "--allow-short", "-q", "--json")
    assert again.code == 0, again.err
    assert "download" not in again.err and again.json()["download"]["bytes"] == len(payload)


def test_pull_ucdp_missing_version_is_clear(cli, served, tmp_path, state_dir):
    base, _ = served
    res = cli("data", "pull", "ucdp", "--version", "99.9", "--url", f"{base}/nothing-here.zip")
    assert res.code == 2
    assert "nothing-here.zip" in res.err and "404" in res.err
    assert not (state_dir / "snapshots").exists()


@pytest.mark.parametrize("version", ["latest", "24", "24.1.2.3"])
def test_pull_ucdp_bad_version(cli, version):
    res = cli("data", "pull", "ucdp", "--version", version)
    assert res.code == 2 and "--version" in res.err
