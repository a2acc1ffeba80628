"""Shared fixtures: the real data folder (skipped with a reason when absent) and a CLI runner."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from ewspipe.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("EWSPIPE_SHARED_DIR", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data; CI sets EWSPIPE_REQUIRE_SHARED=1 so a missing folder fails, never skips."""
    path = shared_data_dir()
    if not path.is_dir():
        reason = (
            f"real data folder {path} is absent; set EWSPIPE_SHARED_DIR to the folder holding "
            "data/ to run this test"
        )
        if os.environ.get("EWSPIPE_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def cli(state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `ewspipe ARGS` in-process against a fresh state dir and built-in settings."""
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.chdir(state_dir.parent)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(["--state-dir", str(state_dir), *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files plus two misbehaving endpoints: /slow (never answers in time) and
    /truncated (promises more bytes than it sends)."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2.0)
            self.send_response(200)
            self.end_headers()
            return
        if self.path == "/truncated.zip":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PK\x03\x04" + b"x" * 100)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, directory it serves) for an HTTP server on 127.0.0.1 and a free port."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(root))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request, tmp_path):
    """A state database per test: SQLite and, when a server is given, a fresh PostgreSQL
    database (dropped afterwards). CI (.ci/run) starts a real PostgreSQL on 127.0.0.1 and sets
    EWSPIPE_REQUIRE_POSTGRES=1, so there the PostgreSQL half never skips."""
    from ewspipe.store.statedb import open_state_db

    if request.param == "sqlite":
        yield open_state_db("", tmp_path)
        return
    url = os.environ.get("EWSPIPE_TEST_POSTGRES_URL")
    if not url:
        reason = "no PostgreSQL server: set EWSPIPE_TEST_POSTGRES_URL (.ci/run starts one)"
        if os.environ.get("EWSPIPE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    import psycopg

    name = f"ewspipe_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = url.rpartition("/")
    try:
        yield open_state_db(f"{base}/{name}", tmp_path)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
