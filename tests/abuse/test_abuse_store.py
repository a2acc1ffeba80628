"""Fault-and-abuse cases of the stores, through the CLI's read commands (issue 18, cases 2/4).

One real workspace per module (tests/api/api_workspace.py: a released product with a
development and a production run, an evaluation run); each case damages one stored file
(a flipped bit, a truncated or garbage file, an edited record), runs a read command with
``--json`` and restores the file. Every case asserts exit 2, one JSON document naming the
file and the fix, no traceback and nothing written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.abuse.harness import assert_refused, tree_digest
from tests.api.api_workspace import TOKEN_ENV, Workspace, build_workspace

from ewspipe.store.integrity import sidecar


@dataclass(frozen=True)
class Damage:
    """What a corruption damaged and what the refusal must mention."""

    file: Path
    mentions: tuple[str, ...]


def published_partition(ws: Workspace, env: str = "production", level: str = "cm") -> Path:
    pointer = json.loads((ws.state / env / "published" / level / "ged_sb.json").read_text())
    return (ws.state / env / "predictions" / f"level={level}" / f"run={pointer['run']}"
            / f"model={pointer['primary']}" / "part-0.parquet")


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(hashlib.sha512(b"garbage").digest() * 64)


def partition_bitflip(ws: Workspace) -> Damage:
    path = published_partition(ws)
    _flip_bit(path)
    return Damage(path, ("part-0.parquet", "sha256", "ewspipe run"))


def partition_truncated(ws: Workspace) -> Damage:
    path = published_partition(ws)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Damage(path, ("part-0.parquet", "damaged", "ewspipe run"))


def partition_hash_edited(ws: Workspace) -> Damage:
    path = published_partition(ws)
    sidecar(path).write_text("0" * 64 + "  part-0.parquet\n")
    return Damage(path, ("part-0.parquet", "sha256", "restore"))


def pointer_edited(ws: Workspace) -> Damage:
    path = ws.state / "production" / "published" / "cm" / "ged_sb.json"
    doc = json.loads(path.read_text())
    doc["run"] = doc["run"][:-1] + ("0" if doc["run"][-1] != "0" else "1")
    path.write_text(json.dumps(doc, indent=2))
    return Damage(path, ("ged_sb.json", "content_sha256", "ewspipe run"))


def pointer_garbage(ws: Workspace) -> Damage:
    path = ws.state / "production" / "published" / "cm" / "ged_sb.json"
    _garbage(path)
    return Damage(path, ("ged_sb.json", "published pointer", "ewspipe run"))


def statedb_garbage(ws: Workspace) -> Damage:
    path = ws.state / "production" / "state.db"
    _garbage(path)
    return Damage(path, ("state.db", "damaged", "restore"))


def _sql(path: Path, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute(sql)


def statedb_bad_run_record(ws: Workspace) -> Damage:
    path = ws.state / "production" / "state.db"
    _sql(path, "UPDATE runs SET record = '{\"run_id\": ' WHERE run_id = "
         "(SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)")
    return Damage(path, ("state.db", "run record", "restore"))


def statedb_bad_pointer_entry(ws: Workspace) -> Damage:
    path = ws.state / "production" / "state.db"
    _sql(path, "UPDATE pointer_history SET pointer = 'not json'")
    return Damage(path, ("state.db", "pointer history", "restore"))


def run_record_edited(ws: Workspace) -> Damage:
    path = ws.state / "runs" / ws.evaluation["run_id"] / "run.json"
    path.write_text(path.read_text().replace('"calibration"', '"validation"', 1))
    return Damage(path, ("run.json", "sha256", "restore"))


def run_record_garbage(ws: Workspace) -> Damage:
    path = ws.state / "runs" / ws.evaluation["run_id"] / "run.json"
    _garbage(path)
    return Damage(path, ("run.json", "damaged", "restore"))


def alerts_bad_line(ws: Workspace) -> Damage:
    path = ws.state / "alerts.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"source": "x", "severity": \n')
    return Damage(path, ("alerts.jsonl", "line", "delete that line"))


def alerts_not_utf8(ws: Workspace) -> Damage:
    path = ws.state / "alerts.jsonl"
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe\x00garbage\n")
    return Damage(path, ("alerts.jsonl", "line", "delete that line"))


def env_alerts_bad_line(ws: Workspace) -> Damage:
    path = ws.state / "production" / "alerts.jsonl"
    with path.open("ab") as fh:
        fh.write(b"[1, 2, 3]\n")
    return Damage(path, ("alerts.jsonl", "line", "delete that line"))


# every file a corruption may touch, saved before and restored after each case
def _touched(ws: Workspace) -> list[Path]:
    part = published_partition(ws)
    return [part, sidecar(part), ws.state / "production" / "published" / "cm" / "ged_sb.json",
            ws.state / "production" / "state.db",
            ws.state / "runs" / ws.evaluation["run_id"] / "run.json",
            ws.state / "alerts.jsonl", ws.state / "production" / "alerts.jsonl"]


@contextlib.contextmanager
def damaged(ws: Workspace, corrupt: Callable[[Workspace], Damage]) -> Iterator[Damage]:
    """Apply ``corrupt`` to the workspace and undo it afterwards (byte- and mtime-exact)."""
    saved, paths = {}, _touched(ws)
    for path in paths:
        if path.exists():
            keep = path.with_name(path.name + ".saved-by-test")
            shutil.copy2(path, keep)
            saved[path] = keep
    try:
        yield corrupt(ws)
    finally:
        for path in paths:
            if path in saved:
                os.replace(saved[path], path)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("abuse-store"))


@pytest.fixture
def cli(ewspipe, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return lambda *args: ewspipe("--config", ws.config, "--state-dir", ws.state, *args)


def _partition_args(ws: Workspace) -> list[str]:
    pointer = json.loads((ws.state / "production" / "published" / "cm" / "ged_sb.json")
                         .read_text())
    return ["forecasts", "query", "--env", "production", "--level", "cm", "--model",
            pointer["primary"], "--run", pointer["run"], "--json"]


def _published_query_args(ws: Workspace) -> list[str]:
    pointer = json.loads((ws.state / "production" / "published" / "cm" / "ged_sb.json")
                         .read_text())
    return ["forecasts", "query", "--env", "production", "--level", "cm", "--model",
            pointer["primary"], "--published", "--json"]


PUBLISHED = ["forecasts", "published", "--env", "production", "--level", "cm", "--json"]

CASES = [
    # (what the command reads, corruption, arguments)
    ("query", partition_bitflip, _partition_args),
    ("query", partition_truncated, _partition_args),
    ("query", partition_hash_edited, _partition_args),
    ("query --published", partition_bitflip, _published_query_args),
    ("query --published", pointer_edited, _published_query_args),
    ("query --published", pointer_garbage, _published_query_args),
    ("query --published", statedb_garbage, _published_query_args),
    ("published", statedb_garbage, lambda ws: PUBLISHED),
    ("published", statedb_bad_pointer_entry, lambda ws: PUBLISHED),
    ("published", pointer_edited, lambda ws: PUBLISHED),
    ("published", pointer_garbage, lambda ws: PUBLISHED),
    ("evaluate report", run_record_edited,
     lambda ws: ["evaluate", "report", ws.evaluation["run_id"], "--json"]),
    ("evaluate report", run_record_garbage,
     lambda ws: ["evaluate", "report", ws.evaluation["run_id"], "--json"]),
    ("release log", statedb_garbage, lambda ws: ["release", "log", "--json"]),
    ("published pgm", statedb_bad_pointer_entry, lambda ws: ["forecasts", "published", "--env",
                                                           "production", "--level", "pgm",
                                                           "--json"]),
    ("run", statedb_garbage, lambda ws: ["run", "--env", "production", "--quiet", "--json"]),
    ("alerts list", alerts_bad_line, lambda ws: ["alerts", "list", "--json"]),
    ("alerts list", alerts_not_utf8, lambda ws: ["alerts", "list", "--json"]),
]


@pytest.mark.parametrize("entry, corrupt, args", CASES,
                         ids=[f"{e}-{c.__name__}" for e, c, _ in CASES])
def test_a_damaged_file_is_a_clean_refusal_naming_it(cli, ws, entry, corrupt, args) -> None:
    argv = args(ws)
    with damaged(ws, corrupt) as damage:
        before = tree_digest(ws.state)
        result = cli(*argv)
        after = tree_digest(ws.state)
    doc = assert_refused(result, code=2, mentions=damage.mentions, before=before, after=after)
    assert doc["kind"] == "IntegrityError", doc
    assert str(damage.file) in doc["error"], doc["error"]


def test_the_same_reads_succeed_on_the_intact_workspace(cli, ws) -> None:
    """The refusals above are caused by the damage, not by the arguments."""
    for argv in (_partition_args(ws), _published_query_args(ws), PUBLISHED,
                 ["alerts", "list", "--json"]):
        result = cli(*argv)
        assert result.code == 0, result
        json.loads(result.out)


def test_a_read_never_creates_the_state_database(ewspipe, ws, tmp_path) -> None:
    """`forecasts published` of an environment that never ran reads, writes nothing (it used
    to create ``production/state.db``)."""
    state = tmp_path / "fresh-state"
    before = tree_digest(state)
    result = ewspipe("--config", ws.config, "--state-dir", state, "forecasts", "published",
                     "--level", "cm", "--target", "deaths", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["current"] is None
    assert tree_digest(state) == before
    assert not (state / "production" / "state.db").exists()


def test_a_rerun_rewrites_a_damaged_partition_instead_of_reporting_ok_on_it(cli, ws) -> None:
    """`ewspipe run` of the same month reuses its cached tasks; a stored partition that no
    longer matches its hash makes the store task run again and rewrite it."""
    path = sorted((ws.state / "development" / "predictions" / "level=cm").glob(
        "run=*/model=*/part-0.parquet"))[0]
    recorded = sidecar(path).read_text().split()[0]
    _flip_bit(path)
    result = cli("run", "--env", "development", "--quiet", "--json")
    assert result.code == 0, result
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded
    assert cli(*["forecasts", "query", "--env", "development", "--level", "cm", "--model",
                 path.parent.name.split("=", 1)[1], "--run",
                 path.parent.parent.name.split("=", 1)[1], "--json"]).code == 0
