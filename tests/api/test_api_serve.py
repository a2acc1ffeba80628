"""`ewspipe serve` as a real process: it answers over loopback, reports where it listens, stops
on Ctrl-C, and refuses a bad host, a bad port, a port in use or a short token (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from api_workspace import TOKEN_ENV

from ewspipe.cli.main import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR", TOKEN_ENV)}
    return {**env, **extra}


def _argv(workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "ewspipe", "--config", str(workspace.config), "--state-dir",
            str(workspace.state), "serve", *args]


def _read_json_doc(proc: subprocess.Popen[str], timeout: float = 60.0) -> dict:
    """The one JSON document serve prints once it listens (it spans several lines)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.rstrip() == "}":
            return json.loads("".join(lines))
    raise AssertionError(f"no JSON document from serve: {''.join(lines)!r}")


def test_serves_over_loopback_and_stops_on_ctrl_c(workspace):
    port = _free_port()
    proc = subprocess.Popen(_argv(workspace, "--port", str(port), "--json"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        doc = _read_json_doc(proc)
        assert doc["url"] == f"http://127.0.0.1:{port}" and doc["write_enabled"] is False
        with httpx.Client(base_url=doc["url"], timeout=30) as http:
            assert http.get("/api/v1/health").json()["status"] == "ok"
            rows = http.get("/api/v1/forecasts/cm/ged_sb", params={"month_from": 521,
                                                                   "month_to": 521}).json()
            assert rows["published"] is True and rows["total"] == len(rows["rows"]) > 0
            csv = http.get("/api/v1/forecasts/cm/ged_sb", headers={"Accept": "text/csv"},
                           params={"limit": 3})
            assert csv.text.splitlines()[0] == ('"origin","step","month_id","country_id","name",'
                                                '"isoab","label","point"')
            assert "access-control-allow-origin" not in http.options(
                "/api/v1/health", headers={"Origin": "http://evil.example",
                                           "Access-Control-Request-Method": "GET"}).headers
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.fixture
def fails(workspace, capsys, monkeypatch):
    """Run `ewspipe serve ARGS` in-process (each of these fails before the server starts)
    and return its stderr, asserting exit code 2."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    def run(*args: str) -> str:
        capsys.readouterr()
        code = main(["--config", str(workspace.config), "--state-dir", str(workspace.state),
                     "serve", *args])
        err = capsys.readouterr().err
        assert code == 2, err
        return err

    return run


def test_port_in_use_is_exit_2(fails):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = fails("--port", str(port))
    assert f"option --port: port {port} on 127.0.0.1 is already in use" in err


@pytest.mark.parametrize(("args", "needle"), [
    (("--host", "no-such-host.invalid"), "option --host: cannot resolve"),
    (("--host", "192.0.2.1"), "option --host: cannot listen on 192.0.2.1"),
    (("--host", " "), "option --host"),
    (("--port", "0"), "'--port'"),
    (("--port", "70000"), "'--port'"),
    (("--port", "http"), "'--port'"),
])
def test_bad_host_or_port_is_exit_2(fails, args, needle):
    assert needle in fails(*args)


def test_short_token_is_exit_2(fails, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "abc")
    assert f"environment variable {TOKEN_ENV}" in fails("--port", str(_free_port()))


def test_writes_on_with_a_token(workspace):
    port = _free_port()
    token = "a-token-long-enough-for-serve"
    proc = subprocess.Popen(_argv(workspace, "--port", str(port), "--json"),
                            env=_env(**{TOKEN_ENV: token}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        doc = _read_json_doc(proc)
        assert doc["write_enabled"] is True
        with httpx.Client(base_url=doc["url"], timeout=30) as http:
            wrong = http.post("/api/v1/published/cm/ged_sb", json={"run": "x"},
                              headers={"Authorization": "Bearer wrong-token-wrong-token"})
            assert wrong.status_code == 401
            unknown = http.post("/api/v1/published/cm/ged_sb", json={"run": "m1-none"},
                                headers={"Authorization": f"Bearer {token}"})
            assert unknown.status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
