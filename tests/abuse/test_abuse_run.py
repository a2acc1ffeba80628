"""Faults and abuse of `ewspipe run`, `evaluate` and `forecast` (issue 18, case 6).

State that is damaged by hand heals: deleted artifacts, deleted, truncated, garbage or edited
task records are cache misses (warned about, naming the file) and only they are recomputed,
to the same forecasts. A run killed with SIGKILL at any point resumes to the same forecasts and
is closed as ``interrupted``. Hostile options and state are clean refusals (harness.py).

One workspace (the small monthly workspace, demo data) is prepared once per module and copied
per case: ``seed`` has only the data, ``done`` also a monthly run, a forecast and an
evaluation.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.abuse.harness import assert_refused, tree_digest
from tests.flows.monthly_workspace import write_monthly_workspace

from ewspipe.cli.main import main
from ewspipe.errors import InputError
from ewspipe.flows.executors import make_executor, parse_executor
from ewspipe.flows.graph import Graph, Task
from ewspipe.flows.runner import EnvironmentLock, TaskCache, run_graph
from ewspipe.store.statedb import open_state_db

EVALUATE = ("evaluate", "--run-type", "calibration")
CM_DATA = "snapshots/cm-*/data.parquet"


def _main(*args: object) -> dict[str, Any]:
    """The CLI in-process (module set-up: no capsys), its --json document."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main([str(a) for a in args])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def _tables(folder: Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every forecast table below ``folder``: its data and its metadata, the artifact named
    by its key digest (the artifact's folder name also carries its training time)."""
    found = {}
    for path in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"ewspipe", b"{}"))
        if "artifact" in meta:
            meta["artifact"] = str(meta["artifact"]).rsplit("_", 1)[-1]
        found[path.relative_to(folder).as_posix()] = (table.replace_schema_metadata(None), meta)
    return found


def _assert_same_tables(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, (table, meta) in want.items():
        assert got[name][0].equals(table), f"{name}: other forecasts"
        assert got[name][1] == meta, f"{name}: other metadata"


def _run_dir(state: Path, run_id: str) -> Path:
    return state / "runs" / run_id


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the demo data imported, nothing run."""
    root = tmp_path_factory.mktemp("seed")
    cfg = write_monthly_workspace(root / "ws")
    _main("--config", cfg, "data", "demo", "--json")
    return root


@pytest.fixture(scope="module")
def done(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``seed`` after an undisturbed monthly run, forecast and evaluation: the reference."""
    root = tmp_path_factory.mktemp("done")
    shutil.copytree(seed / "ws", root / "ws")
    cfg = root / "ws" / "ewspipe.toml"
    state = root / "ws" / "state"
    run = _main("--config", cfg, "run", "--quiet", "--json")
    fc = _main("--config", cfg, "forecast", "--json")
    ev = _main("--config", cfg, *EVALUATE, "--json")
    return {"root": root, "run": run, "forecast": fc, "evaluate": ev,
            "tables": {"run": _tables(state / "development" / "predictions"),
                       "forecast": _tables(_run_dir(state, fc["run_id"])),
                       "evaluate": _tables(_run_dir(state, ev["run_id"]))},
            "metrics": {m["model"]: m["metrics"] for m in ev["models"]}}


def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "ws", dest / "ws")
    return dest / "ws" / "ewspipe.toml"


def _records(tasks: Path) -> dict[str, Path]:
    """Task name -> its record file."""
    return {json.loads(p.read_text())["task"]: p for p in sorted(tasks.glob("*/*.json"))}


def _statuses(env_state: Path) -> dict[str, str]:
    if not (env_state / "state.db").is_file():
        return {}
    return {r["run_id"]: r["status"] for r in open_state_db("", env_state).runs("development")}


def _watched(state: Path) -> dict[str, str]:
    """What a refused command must leave as it was."""
    return tree_digest(state / "snapshots", state / "artifacts", state / "tasks", state / "runs",
                       state / "development" / "tasks", state / "development" / "predictions")


# ------------------------------------------------------------------ damaged state heals

def _garbage(path: Path) -> None:
    path.write_text("{nope")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 2)


def _not_a_record(path: Path) -> None:
    path.write_text("[]")


def _edited(path: Path) -> None:
    """A hand edit of the output (an artifact key that names no artifact)."""
    record = json.loads(path.read_text())
    record["output"] = {**record["output"], "artifact_key": "0" * 64, "path": None}
    path.write_text(json.dumps(record))


def _old_version(path: Path) -> None:
    record = json.loads(path.read_text())
    record.pop("output_sha256")
    path.write_text(json.dumps(record))


def _a_folder(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage": (_garbage, "not valid JSON"),
    "truncated": (_truncated, "not valid JSON"),
    "binary": (_binary, "not valid JSON"),
    "not_a_record": (_not_a_record, "not a task record"),
    "edited": (_edited, "does not match its output checksum"),
    "old_version": (_old_version, "no output checksum"),
    "a_folder": (_a_folder, "is not a file"),
}
DAMAGED = ("train:small_ridge", "forecast:small_tree", "qa")


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_task_record_is_recomputed_with_a_warning(kind, done, ewspipe, tmp_path,
                                                             caplog):
    cfg = _copy(done["root"], tmp_path)
    env = cfg.parent / "state" / "development"
    records = _records(env / "tasks")
    damage, why = DAMAGE[kind]
    for task in DAMAGED:
        damage(records[task])
    with caplog.at_level("WARNING", logger="ewspipe.flows.runner"):
        res = ewspipe("--config", cfg, "run", "--quiet", "--json")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    doc = json.loads(res.out)  # exactly one document
    assert doc["status"] == "ok"
    assert sorted(doc["ran"]) == sorted(["snapshot", *DAMAGED])  # only what was damaged
    for task in DAMAGED:
        assert any(records[task].name in r.getMessage() and why in r.getMessage()
                   for r in caplog.records), (task, caplog.text)
    _assert_same_tables(_tables(env / "predictions"), done["tables"]["run"])
    again = ewspipe("--config", cfg, "run", "--quiet", "--json")
    assert json.loads(again.out)["ran"] == ["snapshot"]  # healed: records written anew


def test_deleted_artifacts_and_half_the_records_heal_in_every_command(done, ewspipe, tmp_path,
                                                                      caplog):
    cfg = _copy(done["root"], tmp_path)
    state = cfg.parent / "state"
    shutil.rmtree(state / "artifacts")
    deleted: dict[str, set[str]] = {}
    for where, tasks in (("run", state / "development" / "tasks"), ("engine", state / "tasks")):
        records = sorted(_records(tasks).items(), key=lambda kv: kv[1].name)
        deleted[where] = {task for task, _ in records[::2]}
        for _, path in records[::2]:
            path.unlink()
    with caplog.at_level("WARNING", logger="ewspipe.flows.runner"):
        run = ewspipe("--config", cfg, "run", "--quiet", "--json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["status"] == "ok"
    trains = {t for t in _records(state / "development" / "tasks") if t.startswith("train:")}
    assert set(doc["ran"]) <= {"snapshot", *deleted["run"], *trains}
    assert set(doc["reused"]) >= set(_records(state / "development" / "tasks")) \
        - deleted["run"] - trains
    _assert_same_tables(_tables(state / "development" / "predictions"), done["tables"]["run"])

    for name, args in (("forecast", ("forecast",)), ("evaluate", EVALUATE)):
        res = ewspipe("--config", cfg, *args, "--json")
        assert res.code == 0, res.err
        out = json.loads(res.out)
        ran = {t["task"] for t in out["tasks"] if t["status"] == "ran"}
        assert ran <= deleted["engine"] | {t for t in ran if t.startswith("fit:")}
        _assert_same_tables(_tables(_run_dir(state, out["run_id"])), done["tables"][name])
        if name == "evaluate":
            assert {m["model"]: m["metrics"] for m in out["models"]} == done["metrics"]


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_half_written_files_of_a_killed_run_are_removed(done, ewspipe, tmp_path):
    """A kill -9 mid-write leaves hidden temporaries (a prediction partition, a record, an
    artifact); the next run removes those of dead writers and keeps a live writer's."""
    cfg = _copy(done["root"], tmp_path)
    state = cfg.parent / "state"
    dead, token = _dead_pid(), "0123456789ab"
    (partition,) = (state / "development" / "predictions" / "level=cm").iterdir()
    stale = [partition / f".tmp-model=small_tree-{dead}-{token}",
             state / "development" / "tasks" / "00" / f".x.json.{dead}-{token}.tmp",
             state / "artifacts" / "small_tree" / "forecasting" / f".tmp-x-{dead}-{token}",
             state / "tasks" / f".y.json.{dead}-{token}.tmp"]
    live = partition / f".tmp-model=small_tree-{os.getpid()}-{token}"
    for path in [*stale, live]:
        if path.name.endswith(".tmp"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half")
        else:
            path.mkdir(parents=True)
            (path / "part-0.parquet").write_bytes(b"half")
    assert ewspipe("--config", cfg, "run", "--quiet", "--json").code == 0
    assert ewspipe("--config", cfg, "forecast", "--json").code == 0
    assert [p for p in stale if p.exists()] == [] and live.is_dir()


def test_a_stale_lock_of_a_dead_process_is_taken_over(done, ewspipe, tmp_path):
    cfg = _copy(done["root"], tmp_path)
    lock = cfg.parent / "state" / "development" / "run.lock"
    dead = _dead_pid()
    lock.write_text(f"{dead} on {socket.gethostname()} since 2026-01-01T00:00:00Z\n")
    res = ewspipe("--config", cfg, "run", "--quiet", "--lock-timeout", "0", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["status"] == "ok"


def test_a_live_lock_refuses_naming_its_holder(done, ewspipe, tmp_path):
    cfg = _copy(done["root"], tmp_path)
    state = cfg.parent / "state"
    before = _watched(state)
    with EnvironmentLock(state / "development" / "run.lock", timeout=0,
                         environment="development"):
        res = ewspipe("--config", cfg, "run", "--quiet", "--lock-timeout", "0", "--json")
    assert_refused(res, code=1, mentions=[f"pid {os.getpid()}", socket.gethostname(),
                                         "run.lock", "--lock-timeout"],
                   before=before, after=_watched(state))


# ------------------------------------------------------------------ hostile input and state

def _delete_cm_data(state: Path) -> None:
    for path in state.glob(CM_DATA):
        path.unlink()


CASES: list[tuple[str, tuple[str, ...], Callable[[Path], None] | None, int, list[str]]] = [
    ("run_without_snapshot_data", ("run", "--quiet"), _delete_cm_data, 2,
     ["data.parquet", "is missing", "ewspipe data import panel", "--level cm"]),
    ("forecast_without_snapshot_data", ("forecast",), _delete_cm_data, 2,
     ["data.parquet", "is missing", "ewspipe data import panel"]),
    ("evaluate_without_snapshot_data", EVALUATE, _delete_cm_data, 2,
     ["data.parquet", "is missing", "ewspipe data import panel"]),
    ("run_unknown_env", ("run", "--env", "nowhere"), None, 2,
     ["--env", "nowhere", "[run] environments"]),
    ("run_unknown_executor", ("run", "--executor", "threads"), None, 2,
     ["--executor", "threads", "tcp://"]),
    ("run_negative_lock_timeout", ("run", "--lock-timeout", "-1"), None, 2,
     ["--lock-timeout", ">= 0"]),
    ("evaluate_without_run_type", ("evaluate",), None, 2, ["--run-type", "calibration"]),
    ("evaluate_unknown_run_type", ("evaluate", "--run-type", "testing"), None, 2,
     ["--run-type", "testing", "calibration, validation, or backtest"]),
    ("evaluate_backtest_with_report", ("evaluate", "--run-type", "backtest", "--report"),
     None, 2, ["--report", "one run per window", "ewspipe evaluate report"]),
    ("evaluate_backtest_without_snapshot_data", ("evaluate", "--run-type", "backtest"),
     _delete_cm_data, 2, ["data.parquet", "is missing", "ewspipe data import panel"]),
    ("evaluate_unknown_executor", (*EVALUATE, "--executor", "bogus"), None, 2,
     ["--executor", "bogus"]),
    ("forecast_executor_without_port", ("forecast", "--executor", "tcp://nohost"), None, 2,
     ["--executor", "HOST:PORT"]),
    ("forecast_unknown_level", ("forecast", "--level", "xyz"), None, 2, ["--level", "'cm'"]),
    ("forecast_unknown_model", ("forecast", "--model", "nope"), None, 2,
     ["'nope'", "ewspipe models list"]),
    ("forecast_unknown_snapshot", ("forecast", "--snapshot", "cm-0000000000000000"), None, 2,
     ["cm-0000000000000000", "ewspipe data list"]),
    ("compare_foreign_run_ids", ("evaluate", "compare", "20240101_000000_evaluate_x",
                                 "20240101_000000_evaluate_y"), None, 2,
     ["20240101_000000_evaluate_x", "newest stored runs", "run_id"]),
    ("report_path_as_run_id", ("evaluate", "report", "../../development"), None, 2,
     ["'../../development'", "not a run id"]),
    ("report_unknown_run_id", ("evaluate", "report", "nope"), None, 2,
     ["'nope'", "newest stored runs"]),
]


@pytest.mark.parametrize(("args", "prepare", "code", "mentions"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_a_clean_refusal(args, prepare, code, mentions, done, ewspipe,
                                          tmp_path):
    cfg = _copy(done["root"], tmp_path)
    state = cfg.parent / "state"
    if prepare is not None:
        prepare(state)
    before = _watched(state)
    res = ewspipe("--config", cfg, *args, "--json")
    assert_refused(res, code=code, mentions=mentions, before=before, after=_watched(state))


def _fail_read_only(ctx: object, *, key: str, folder: str) -> dict[str, Any]:
    raise PermissionError(errno.EACCES, "Permission denied", str(Path(folder) / "x" / "y.tmp"))


def test_a_refused_write_names_the_folder_and_the_fix(tmp_path):
    """What a read-only tasks/ or artifacts/ folder raises in a task (as root no folder is
    read-only, so the error itself is raised here): exit 2 naming the folder."""
    graph = Graph([Task("write", _fail_read_only, params={"folder": str(tmp_path)})])
    ex = make_executor(parse_executor("local"))
    try:
        with pytest.raises(InputError) as exc:
            run_graph(graph, None, base_key="b", executor=ex,
                      cache=TaskCache(tmp_path / "tasks", tmp_path))
    finally:
        ex.close()
    assert exc.value.exit_code == 2
    assert f"the folder {tmp_path} is not writable" in str(exc.value)
    assert "chmod u+w" in str(exc.value) and "--state-dir" in str(exc.value)


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` (created empty) read-only for this process: chmod for a user; for root,
    which writes through permissions, the immutable attribute (skipped where unsupported)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)],
                                        capture_output=True).returncode != 0:
        pytest.skip("running as root without `chattr +i`: no folder is read-only for root")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@pytest.mark.parametrize(("args", "folder"), [
    (("run", "--quiet"), "development/tasks"),
    (("run", "--quiet"), "artifacts"),
    (("forecast",), "tasks"),
    (EVALUATE, "artifacts"),
], ids=["run-tasks", "run-artifacts", "forecast-tasks", "evaluate-artifacts"])
def test_a_read_only_state_folder_is_exit_2_naming_it(args, folder, seed, ewspipe, tmp_path):
    cfg = _copy(seed, tmp_path)
    state = cfg.parent / "state"
    target = state / folder
    with _read_only(target):
        before = _watched(state)
        res = ewspipe("--config", cfg, *args, "--json")
        after = _watched(state)
    assert_refused(res, code=2, mentions=[f"the folder {target} is not writable", "chmod u+w",
                                         "--state-dir"], before=before, after=after)


# ------------------------------------------------------------------ kill -9 at many points

def _count(tasks: Path) -> int:
    return len(list(tasks.glob("*/*.json"))) if tasks.is_dir() else 0


@pytest.fixture
def killed(seed: Path, tmp_path: Path) -> Iterator[Callable[[int], tuple[Path, str]]]:
    """``kill(k)``: start `ewspipe run` on a copy of ``seed`` in a subprocess and SIGKILL it
    once its k-th task record appears (k = 0: once it recorded itself as running)."""
    procs: list[subprocess.Popen] = []

    def kill(k: int) -> tuple[Path, str]:
        cfg = _copy(seed, tmp_path)
        env_state = cfg.parent / "state" / "development"
        env = {n: v for n, v in os.environ.items()
               if n not in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR")}
        proc = subprocess.Popen([sys.executable, "-m", "ewspipe", "--config", str(cfg), "run",
                                 "--quiet", "--json"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        deadline = time.monotonic() + 120
        while (_count(env_state / "tasks") < k if k
               else "running" not in _statuses(env_state).values()):
            assert proc.poll() is None, f"the run ended before record {k}: {proc.stderr}"
            assert time.monotonic() < deadline, f"record {k} never appeared"
            time.sleep(0.01)
        assert proc.poll() is None, f"the run finished before it could be killed at {k}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        (running,) = [r for r, s in _statuses(env_state).items() if s == "running"]
        return cfg, running

    yield kill
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# of the 16 task records of a run (k = 0: before the first); the last few are left for the
# run to still be going when it is killed
@pytest.mark.parametrize("k", [0, 1, 3, 5, 7, 9, 11, 13])
def test_a_run_killed_at_any_point_resumes_to_the_same_forecasts(k, killed, done, ewspipe):
    cfg, killed_id = killed(k)
    env_state = cfg.parent / "state" / "development"
    done_before = _count(env_state / "tasks")
    res = ewspipe("--config", cfg, "run", "--quiet", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["status"] == "ok"
    assert len(doc["reused"]) >= done_before  # what the killed run finished is kept
    # the same forecasts as the undisturbed run of the same workspace
    _assert_same_tables(_tables(env_state / "predictions"), done["tables"]["run"])
    statuses = _statuses(env_state)
    assert statuses[killed_id] == "interrupted" and statuses[doc["run_id"]] == "ok"
    assert "running" not in statuses.values()
