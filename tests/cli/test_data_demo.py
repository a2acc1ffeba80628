"""`ewspipe data demo`: the main job's data step, end to end through the CLI."""

from __future__ import annotations

SMALL = ("--countries", "30", "--pgm-cells", "120", "--last-month", "200")


def test_demo_imports_both_levels(cli):
    res = cli("data", "demo", *SMALL, "--json")
    assert res.code == 0, res.err
    doc = res.json()
    cm, pgm = doc["cm"]["manifest"], doc["pgm"]["manifest"]
    assert (cm["first_month"], cm["last_month"]) == (121, 200)
    assert pgm["units"] == 120 and pgm["rows"] == 120 * 80
    assert cm["validation"]["passed"] and pgm["validation"]["passed"]
    assert cm["source"]["kind"] == "demo" and cm["source"]["seed"] == 20240701
    # grid totals never exceed country totals (cells belong to a subset of countries)
    for col in ("ged_sb", "ged_ns", "ged_os"):
        assert pgm["totals"][col] <= cm["totals"][col]
    assert doc["cm"]["summary"]["counts"]["ged_sb"]["zero_share"] > 0.5


def test_demo_is_deterministic_and_idempotent(cli):
    first = cli("data", "demo", *SMALL, "--json").json()
    again = cli("data", "demo", *SMALL, "--json").json()
    assert again["cm"]["snapshot"] == first["cm"]["snapshot"]
    assert again["cm"]["created"] is False
    other = cli("data", "demo", *SMALL, "--seed", "3", "--json").json()
    assert other["cm"]["snapshot"] != first["cm"]["snapshot"]
    assert len(cli("data", "list", "--json").json()["snapshots"]) == 4


def test_demo_human_output_has_report(cli):
    res = cli("data", "demo", *SMALL)
    assert res.code == 0
    assert res.out.count("Validation report (PASS)") == 2
    assert "summary (pgm" in res.out


def test_demo_bad_options(cli, state_dir):
    res = cli("data", "demo", "--pgm-cells", "20000")
    assert res.code == 2 and "--pgm-cells" in res.err
    res = cli("data", "demo", "--last-month", "100")
    assert res.code == 2 and "--last-month" in res.err
    res = cli("data", "demo", "--countries", "two")
    assert res.code == 2
    assert not (state_dir / "snapshots").exists() or not any((state_dir / "snapshots").iterdir())


def test_demo_global_world_covers_every_cell_and_reconciles(cli, shared_data):
    res = cli("data", "demo", "--cells", "global", "--last-month", "160", "--json",
              "--no-alerts")
    assert res.code == 0, res.err
    doc = res.json()
    cm, pgm = doc["cm"]["manifest"], doc["pgm"]["manifest"]
    assert pgm["units"] == 66_205 and pgm["rows"] == 66_205 * 40
    assert cm["units"] == 187 and cm["source"]["pgm_cells"] == "global"
    assert pgm["totals"] == cm["totals"]  # every country owns cells: the totals reconcile
    assert pgm["validation"]["passed"] and doc["pgm"]["drift"].get("alarms") is not None
    assert doc["pgm"]["summary"]["units"] == 66_205


def test_demo_global_without_the_table_is_refused(cli, state_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EWSPIPE_SHARED_DIR", str(tmp_path / "nowhere"))
    res = cli("data", "demo", "--cells", "global", "--last-month", "160", "--json")
    assert res.code == 2 and "Traceback" not in res.err
    assert "EWSPIPE_SHARED_DIR" in res.err and "priogrid.parquet" in res.err
    assert res.json()["exit_code"] == 2
    assert not (state_dir / "snapshots").exists() or not any((state_dir / "snapshots").iterdir())
    res = cli("data", "demo", "--cells", "everywhere")
    assert res.code == 2 and "--cells global" in res.err and "everywhere" in res.err
    res = cli("data", "demo", "--pgm-cells", "20000")
    assert res.code == 2 and "option --pgm-cells" in res.err and "global" in res.err
