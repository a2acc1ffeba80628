"""Every command of the CLI against hostile settings and state: no traceback, ever.

The commands are found by walking the click tree of the Typer app, so a new command is covered
(and :data:`ARGS` must give it minimal valid arguments, else
``test_every_command_has_minimal_args`` fails). Each runs with ``--json`` under:

(a) a settings file that is not UTF-8 (``--config``): every command loads the settings first,
    so every command refuses with exit 2 naming the file;
(b) ``--state-dir`` naming a regular file: refused at load for every command, exit 2 naming it;
(c) a state folder holding a garbage ``state.db`` (in every environment folder too), once
    writable and once read-only (``chattr +i`` when the tests run as root). Writable: the
    expected exit code is :data:`ARGS`' second column (documented there). Read-only: nothing
    is written and a refusal carries its exit code. Never an internal error (exit 70), never
    a traceback, always exactly one JSON document.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from tests.abuse.harness import Outcome, assert_refused, tree_digest

from ewspipe.cli.main import INTERNAL_ERROR_EXIT, app

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
GARBAGE = bytes(range(256)) * 8  # not SQLite, not UTF-8

# command path -> (minimal valid arguments, expected exit code under (c), why)
# Under (c) "0" means the command legitimately does not open state.db (or copes with it);
# 2 means it needs the input that is damaged or absent and refuses it cleanly.
ARGS: dict[str, tuple[list[str], int | None, str]] = {
    "partitions": ([], 0, "settings only"),
    "forecast": ([], 2, "no models folder"),
    "online-eval": ([], 2, "nothing stored to evaluate"),
    "run": ([], 2, "no models folder"),
    "init": (["ws"], 0, "writes a new workspace folder in the cwd; no state"),
    "serve": ([], None, "serves until interrupted: (a)/(b) only"),
    "mlflow-ui": ([], 0, "prints a command line; reads nothing of the state"),
    "data list": ([], 0, "reads snapshots/, not state.db"),
    "data show": (["nosuch"], 2, "no such snapshot"),
    "data demo": (["--countries", "10", "--pgm-cells", "50", "--last-month", "160"], 0,
                  "writes a snapshot; state.db untouched"),
    "data import panel": (["missing.csv", "--level", "cm"], 2, "file not found"),
    "data import ged": (["missing.csv"], 2, "file not found"),
    "data pull ucdp": (["--version", "24.1"], None, "downloads: (a)/(b) only"),
    "drift check": ([], 2, "no snapshot"),
    "drift selftest": ([], None, "synthetic data only; slow: (a)/(b) only"),
    "drift backtest": (["--snapshot", "nosuch"], 2, "no such snapshot"),
    "alerts list": ([], 0, "reads alerts.jsonl only"),
    "models list": ([], 2, "no models folder"),
    "models show": (["amber_tree"], 2, "no models folder"),
    "models new": (["amber_tree"], 0, "writes a model file in the cwd; no state"),
    "models check": ([], 2, "no models folder"),
    "models catalog": ([], 2, "no models folder"),
    "models features": ([], 0, "settings only"),
    "models sweep": (["amber_tree"], 2, "no models folder"),
    "models stack": (["steady_chorus"], 2, "no models folder"),
    "evaluate": (["--run-type", "calibration"], 2, "no models folder"),
    "evaluate report": (["nosuch"], 2, "no such run"),
    "evaluate compare": (["a", "b"], 2, "no such runs"),
    "qa output-drift": (["nosuch"], 2, "no such run"),
    "qa guards": ([], 2, "no snapshot"),
    "forecasts query": (["--level", "cm", "--model", "x"], 2, "no stored forecasts"),
    "forecasts published": (["--level", "cm"], 2, "damaged state.db"),
    "prefect deploy": ([], None, "contacts a Prefect server: (a)/(b) only"),
    "release status": ([], 2, "not a git repository"),
    "release check": ([], 2, "not a git repository"),
    "release stage": ([], 2, "not a git repository"),
    "release promote": ([], 2, "not a git repository"),
    "release rollback": ([], 2, "not a git repository"),
    "release log": ([], 2, "not a git repository"),
    "release hotfix start": (["fix-x"], 2, "not a git repository"),
    "release hotfix finish": ([], 2, "not a git repository"),
}


def _walk(cmd: object, path: list[str]) -> Iterator[str]:
    commands = getattr(cmd, "commands", None)
    if commands is None:
        yield " ".join(path)
        return
    if path and getattr(cmd, "invoke_without_command", False):
        yield " ".join(path)  # a group that is also a command (`ewspipe evaluate`)
    for name, sub in commands.items():
        yield from _walk(sub, [*path, name])


COMMANDS = sorted(_walk(typer.main.get_command(app), []))


def test_every_command_has_minimal_args() -> None:
    missing = sorted(set(COMMANDS) - set(ARGS))
    assert not missing, f"add minimal arguments for {missing} to ARGS"
    assert not set(ARGS) - set(COMMANDS), "ARGS names commands that no longer exist"


def _call(ewspipe, command: str, *globals_: str) -> Outcome:
    args, _, _ = ARGS[command]
    return ewspipe(*globals_, *command.split(), *args, "--json")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_needs_no_settings(ewspipe, tmp_path: Path, command: str) -> None:
    """`CMD -h` with a broken settings file showed the settings error instead of the help."""
    config = tmp_path / "broken.toml"
    config.write_text("this is [[[ not toml\n")
    before = tree_digest(tmp_path)
    res = ewspipe("--config", config, "--state-dir", tmp_path / "state", *command.split(), "-h")
    assert res.code == 0 and "Usage: ewspipe" in res.out, res.out + res.err
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_settings_not_utf8(ewspipe, tmp_path: Path, command: str) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes("[demo]\n# Côte d'Ivoire\nseed = 1\n".encode("latin-1"))
    before = tree_digest(tmp_path)
    res = _call(ewspipe, command, "--config", config, "--state-dir", tmp_path / "state")
    assert_refused(res, code=2, mentions=[str(config), "UTF-8"], before=before,
                   after=tree_digest(tmp_path))


@pytest.mark.parametrize("command", COMMANDS)
def test_state_dir_is_a_file(ewspipe, tmp_path: Path, command: str) -> None:
    state = tmp_path / "state"
    state.write_text("not a folder\n")
    before = tree_digest(tmp_path)
    res = _call(ewspipe, command, "--state-dir", state)
    assert_refused(res, code=2, mentions=[str(state), "not a folder"], before=before,
                   after=tree_digest(tmp_path))


def _immutable(paths: list[Path], flag: str) -> bool:
    """``chattr +i``/``-i``: the one way to make a folder read-only for root."""
    chattr = shutil.which("chattr")
    return chattr is not None and all(
        subprocess.run([chattr, flag, str(p)], capture_output=True).returncode == 0
        for p in paths)


@pytest.fixture(params=["writable", "read-only"])
def damaged_state(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, bool]]:
    """A state folder whose every state.db is garbage, writable or read-only: chmod for a
    user, the immutable attribute for root (which writes through permissions)."""
    state = tmp_path / "state"
    folders = [state, state / "development", state / "production", state / "staging"]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "state.db").write_bytes(GARBAGE)
    locked = [*folders, *(f / "state.db" for f in folders)]
    read_only = request.param == "read-only"
    if read_only and ROOT:
        if not _immutable(locked, "+i"):
            _immutable(locked, "-i")
            pytest.skip("running as root without `chattr +i`: no folder is read-only for root")
    elif read_only:
        for folder in reversed(folders):
            folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield state, read_only
    if read_only and ROOT:
        _immutable(locked, "-i")
    for folder in folders:
        folder.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("command", [c for c in COMMANDS if ARGS.get(c, ([], None, ""))[1]
                                     is not None])
def test_damaged_state(ewspipe, damaged_state: tuple[Path, bool], command: str) -> None:
    damaged_state, read_only = damaged_state
    expected = ARGS[command][1]
    before = tree_digest(damaged_state)
    res = _call(ewspipe, command, "--state-dir", damaged_state)
    both = res.out + res.err
    assert "Traceback" not in both, both
    assert res.code != INTERNAL_ERROR_EXIT, f"internal error (a bug):\n{both}"
    doc = json.loads(res.out)  # exactly one JSON document, success or refusal
    assert isinstance(doc, dict)
    if read_only:
        # read-only: nothing may be written; a command that must write refuses naming the
        # folder and the fix
        assert tree_digest(damaged_state) == before
        if res.code:
            assert doc["exit_code"] == res.code and doc["error"]
        return
    assert res.code == expected, f"exit {res.code}, expected {expected}:\n{both}"
    if res.code:
        assert doc["exit_code"] == res.code and doc["error"]
    for db in damaged_state.rglob("state.db"):  # nobody "repaired" the garbage by overwriting
        assert db.read_bytes() == GARBAGE, db


def test_the_read_only_state_refuses_writes(damaged_state: tuple[Path, bool]) -> None:
    """The read-only variant is really read-only for this process (root included)."""
    state, read_only = damaged_state
    if not read_only:
        return
    with pytest.raises(OSError):
        (state / "development" / "probe").write_text("x")
    with pytest.raises(OSError):
        (state / "state.db").write_bytes(b"x")


# the options issue 19 added or changed (progress, --no-alerts, repeatable --snapshot,
# declared choices): misused, each is a clean refusal naming the option, and writes nothing
NEW_OPTIONS: list[tuple[list[str], list[str]]] = [
    (["evaluate", "--run-type", "calibration", "--quiet=yes"], ["--quiet"]),
    (["forecast", "--no-alerts=no"], ["--no-alerts"]),
    (["online-eval", "--quiet", "--no-alerts=1"], ["--no-alerts"]),
    (["data", "demo", "--no-alerts=1"], ["--no-alerts"]),
    (["data", "pull", "ucdp", "--version", "24.1", "-q=1"], ["no such option"]),
    (["models", "sweep", "x", "--quiet=1"], ["--quiet"]),
    (["models", "stack", "x", "--shrinkage", "1.5"], ["--shrinkage"]),
    (["models", "stack", "x", "--windows", "0"], ["--windows"]),
    (["run", "--env", "production", "--no-alerts"], ["--no-alerts", "always delivers"]),
    (["forecasts", "query", "--level", "cm", "--model", "m", "--out", "x", "--format", "xml"],
     ["--format", "'xml'"]),
    (["alerts", "list", "--severity", ""], ["--severity"]),
    (["models", "list", "--status", "live"], ["--status", "'live'"]),
    (["evaluate", "compare", "a", "b", "--by", "week"], ["--by", "'week'"]),
    (["data", "import", "panel", "x.csv", "--level", "cm", "--missing", "drop"],
     ["--missing", "'drop'"]),
    # issue 20: the backtest run type and the sweep's objective
    (["models", "sweep", "x", "--on", "validation"], ["--on", "'validation'", "'backtest'"]),
    (["evaluate", "--run-type", "backtest", "--report"], ["--report", "one run per window"]),
    # probed by hand, each once exit 70, a hang, a write or a wrong option blamed
    (["drift", "selftest", "--seed", "-1"], ["--seed"]),
    (["run", "--lock-timeout", "nan"], ["lock timeout must be >= 0"]),
    (["partitions", "--last-observed", "-5"], ["--last-observed", "-5"]),
    (["partitions", "--last-observed", "99999999999999999999"], ["--last-observed"]),
    (["forecasts", "query", "--level", "cm", "--model", "m", "--out", "x.bogus"],
     ["--out", "'.bogus'", "names no format"]),
    (["release", "promote", "--allow", "tests"], ["an override needs a reason"]),
    (["data", "pull", "ucdp", "--version", "24.1", "--url", "notaurl"],
     ["option --url", "'notaurl'", "https://"]),
]


def test_a_models_dir_that_is_a_file_is_named_so(ewspipe, tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text("x = 1\n")
    res = ewspipe("--state-dir", tmp_path / "state", "models", "list", "--models-dir",
                  tmp_path / "models.toml", "--json")
    assert_refused(res, code=2, mentions=["models.toml is a file, not a folder"])


def test_an_empty_state_dir_is_refused(ewspipe, tmp_path: Path) -> None:
    """Path("") is the working directory: state landed in the workspace itself."""
    before = tree_digest(tmp_path)
    res = ewspipe("--state-dir", "", "data", "list", "--json")
    assert_refused(res, code=2, mentions=["--state-dir", "empty"], before=before,
                   after=tree_digest(tmp_path))


@pytest.mark.parametrize(("args", "mentions"), NEW_OPTIONS,
                         ids=[" ".join(a) for a, _ in NEW_OPTIONS])
def test_new_options_refuse_misuse(ewspipe, tmp_path: Path, args: list[str],
                                   mentions: list[str]) -> None:
    before = tree_digest(tmp_path)
    res = ewspipe("--state-dir", tmp_path / "state", *args, "--json")
    assert_refused(res, code=2, mentions=mentions, before=before, after=tree_digest(tmp_path))
