import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import typer

from ewspipe.alerts.records import Severity
from ewspipe.catalog.rules import Status
from ewspipe.cli.choices import (
    BumpName,
    EvaluationRunType,
    LevelName,
    MissingName,
    RunTypeName,
    SeverityName,
    StackCombine,
    StatusName,
)
from ewspipe.cli.main import app
from ewspipe.ensembles.stacking import COMBINATIONS
from ewspipe.panel.schema import Level, MissingPolicy
from ewspipe.partitions import RunType
from ewspipe.release.version import Bump


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
    backtest = [p for p in doc["partitions"] if p["run_type"] == "backtest"]
    assert [(p["window"], p["train"][1], p["test"]) for p in backtest] == [
        ("2005-2008", 300, [301, 348]), ("2009-2012", 348, [349, 396]),
        ("2013-2016", 396, [397, 444]), ("2017-2020", 444, [445, 492])]
    assert "window" not in cal


def test_bad_config_exits_2(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[partitions]\nsteps = -1\n")
    res = cli("--config", str(bad), "partitions")
    assert res.code == 2 and "[partitions] steps" in res.err


# --------------------------------------------------------------------------- fix hints

_QUOTED = re.compile(r"`ewspipe ([^`]*)`")


def _resolves(words: list[str]) -> bool:
    """Whether ``ewspipe <words>`` starts with a real command path of the Typer app (a group
    named alone, or followed by ``...``, refers to the group)."""
    cmd = typer.main.get_command(app)
    for word in words:
        commands = getattr(cmd, "commands", None)
        word = word.split("|")[0]  # `release promote|hotfix finish`: the first alternative
        if commands is None or word.startswith("-") or word == "...":
            return True  # a leaf or options: the rest are its arguments
        if word not in commands:
            return bool(getattr(cmd, "invoke_without_command", False)) and cmd.name != "ewspipe"
        cmd = commands[word]
    return True


def test_every_quoted_command_in_src_exists():
    """A fix hint that names a command the CLI does not have (`ewspipe runs list`) sends
    the user nowhere: every `ewspipe ...` quoted in the source and the docs must resolve."""
    repo = Path(__file__).resolve().parents[2]
    src = repo / "src" / "ewspipe"
    bad = []
    docs = [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
    for path in [*sorted(src.rglob("*.py")), *docs]:
        text = re.sub(r"[\"']\s*\n\s*f?[\"']", "", path.read_text())  # "a " "b" -> "a b"
        for match in _QUOTED.finditer(text):
            words = [w.strip("\"'") for w in match.group(1).split()]
            if not _resolves(words):
                bad.append(f"{path.relative_to(repo)}: `ewspipe {match.group(1)}`")
    assert not bad, "hints naming commands that do not exist:\n" + "\n".join(bad)
    assert not _resolves(["runs", "list"]) and _resolves(["data", "import", "panel", "F"])


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("path", [[], ["data"], ["data", "import", "panel"], ["evaluate"]])
def test_h_is_help(cli, path):
    short, long = cli(*path, "-h"), cli(*path, "--help")
    assert short.code == long.code == 0
    assert short.out == long.out and "-h, --help" in short.out


def test_shell_completion(cli):
    res = cli("--help")
    assert "--install-completion" in res.out and "--show-completion" in res.out
    env = {**os.environ, "_EWSPIPE_COMPLETE": "complete_bash", "COMP_WORDS": "ewspipe da",
           "COMP_CWORD": "1"}
    out = subprocess.run([sys.executable, "-c", "from ewspipe.cli.main import entry; entry()"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["data"]


def test_choices_follow_the_library():
    """The declared choices are the library's levels and run types (a new one is added to both)."""
    assert get_args(LevelName) == tuple(level.value for level in Level)
    # drift thresholds are per calibration/validation/forecasting run; a backtest is evaluated
    assert get_args(RunTypeName) == tuple(rt.value for rt in RunType if rt is not RunType.BACKTEST)
    assert set(get_args(EvaluationRunType)) == {"calibration", "validation", "backtest"}
    assert get_args(MissingName) == tuple(p.value for p in MissingPolicy)
    assert get_args(SeverityName) == tuple(s.value for s in Severity)
    assert get_args(StatusName) == tuple(s.value for s in Status)
    assert get_args(BumpName) == tuple(b.value for b in Bump)
    assert get_args(StackCombine) == COMBINATIONS


@pytest.mark.parametrize(("args", "option", "shown"), [
    (["forecast", "--level"], "--level", "<cm|pgm>"),
    (["data", "pull", "ucdp", "--level"], "--level", "<cm|pgm|both>"),
    (["drift", "check", "--run-type"], "--run-type", "<calibration|validation|forecasting>"),
    (["evaluate", "--run-type"], "--run-type", "<calibration|validation|backtest>"),
    (["forecasts", "query", "--level", "cm", "--model", "m", "--format"], "--format",
     "<json|csv|parquet>"),
    (["data", "import", "panel", "x.csv", "--level", "cm", "--missing"], "--missing",
     "<error|zero>"),
    (["data", "import", "ged", "x.csv", "--duplicates"], "--duplicates", "<refuse|drop>"),
    (["evaluate", "compare", "a", "b", "--by"], "--by", "<month|origin>"),
    (["alerts", "list", "--severity"], "--severity", "<info|warning|error|critical>"),
    (["models", "list", "--status"], "--status", "<deployed|shadow|baseline|deprecated>"),
    (["release", "promote", "--bump"], "--bump", "<major|minor|patch>"),
    (["models", "sweep", "x", "--run-type"], "--run-type",
     "<calibration|validation|forecasting>"),
])
def test_declared_choices(cli, args, option, shown):
    *path, _ = args
    assert shown in cli(*path, "--help").out
    res = cli(*args, "nope", "--json")
    assert res.code == 2
    doc = res.json()
    assert doc["kind"] == "UsageError" and doc["option"] == option
    accepted = shown.strip("<>").split("|")
    assert "'nope'" in doc["error"] and all(f"'{v}'" in doc["error"] for v in accepted)


def test_env_help_lists_the_environments(cli):
    for path in (["run"], ["online-eval"], ["forecasts", "query"], ["prefect", "deploy"]):
        flat = " ".join(cli(*path, "--help").out.split())
        assert "development, staging, production" in flat, path
