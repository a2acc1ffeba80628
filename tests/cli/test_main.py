import subprocess
import sys


def test_help_lists_commands(cli):
    res = cli("--help")
    assert res.code == 0
    for command in ("data", "partitions"):
        assert command in res.out


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "ewspipe", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "data" in out


def test_unknown_command_is_usage_error(cli):
    res = cli("frobnicate")
    assert res.code == 2


def test_partitions_json(cli):
    res = cli("partitions", "--last-observed", "535", "--json")
    assert res.code == 0
    doc = res.json()
    cal = doc["partitions"][0]
    assert cal["train"] == [121, 444] and cal["test"] == [445, 492]
    assert cal["origins"] == list(range(444, 457))
    assert doc["partitions"][2]["test"] == [536, 571]


def test_bad_config_exits_2(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[partitions]\nsteps = -1\n")
    res = cli("--config", str(bad), "partitions")
    assert res.code == 2 and "[partitions] steps" in res.err
