"""Alert sinks against real local servers: JSONL, rotating log files, webhook (HTTP on
127.0.0.1), e-mail (SMTP on 127.0.0.1), MLflow tags; secrets never leak."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes
from multiprocessing import get_context
from pathlib import Path

import pytest

from ewspipe.alerts.log import AlertLog, parse_severity, parse_since
from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import DELIVERY_SOURCE, build_router
from ewspipe.alerts.sinks import (
    EmailSink,
    LogFileSink,
    MlflowSink,
    WebhookSink,
    attach_alerts_to_mlflow,
    digest,
)
from ewspipe.errors import InputError, SettingsError, StoreError
from ewspipe.settings import AlertSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
SECRET = "T0KEN-s3cr3t-9f8e7d"
PASSWORD = "pa55-w0rd-7c6b5a"


def _alert(severity: Severity = Severity.WARNING, n: int = 0, **kw) -> Alert:
    return Alert(source="drift.ks_drift", severity=severity, message=f"alert {n}",
                 offender="global", value=1234.5, threshold=100.0, **kw)


def _everything_written(state_dir: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in state_dir.rglob("*")
                     if p.is_file())


# ------------------------------------------------------------------ JSONL


def test_jsonl_appends_and_filters(tmp_path):
    log = AlertLog(tmp_path / "alerts.jsonl")
    assert log.read() == []
    log.append(_alert(Severity.INFO, time="2024-01-01T00:00:00Z"))
    log.extend([_alert(Severity.ERROR, 1, time="2024-06-01T12:00:00Z"),
                _alert(Severity.CRITICAL, 2, time="2024-07-01T00:00:00Z")])
    lines = log.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["severity"] == "ERROR"
    assert [a.message for a in log.read(min_severity=Severity.ERROR)] == ["alert 1", "alert 2"]
    assert [a.message for a in log.read(since=parse_since("2024-06-15"))] == ["alert 2"]
    assert log.read(source="reconciliation") == []
    assert log.read()[0] == _alert(Severity.INFO, time="2024-01-01T00:00:00Z")


@pytest.mark.parametrize("text", ["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00"])
def test_since_outside_the_utc_range_is_refused(text: str) -> None:
    with pytest.raises(InputError, match=r"option --since: .* outside the dates"):
        parse_since(text)


def _append_many(path: str, worker: int) -> None:
    log = AlertLog(Path(path))
    for i in range(40):
        log.append(_alert(n=worker * 1000 + i, details={"pad": "x" * 3000}))


def test_jsonl_concurrent_writers_never_tear_lines(tmp_path):
    path = tmp_path / "alerts.jsonl"
    with ProcessPoolExecutor(4, mp_context=get_context("fork")) as pool:
        list(pool.map(_append_many, [str(path)] * 4, range(4)))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(_append_many, [str(path)] * 4, range(4, 8)))
    alerts = AlertLog(path).read()
    assert len(alerts) == 8 * 40
    assert len({a.message for a in alerts}) == 8 * 40


def test_jsonl_corrupt_line_is_named(tmp_path):
    log = AlertLog(tmp_path / "alerts.jsonl")
    log.append(_alert())
    with log.path.open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(StoreError, match="line 2: not an alert record"):
        log.read()


def test_jsonl_unwritable_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot append to the alert log"):
        AlertLog(tmp_path / "file" / "alerts.jsonl").append(_alert())


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01", ""])
def test_parse_since_refuses_non_iso(bad):
    with pytest.raises(InputError, match=r"--since: .* is not an ISO date"):
        parse_since(bad)


def test_parse_severity():
    assert parse_severity("warning") is Severity.WARNING
    with pytest.raises(InputError, match="unknown severity 'LOUD'; use one of INFO"):
        parse_severity("LOUD")


# ------------------------------------------------------------------ log files


def test_log_files_per_level_rotate_daily_with_retention(tmp_path):
    sink = LogFileSink(tmp_path / "logs", retention_days=2)
    try:
        result = sink.deliver([_alert(s, i) for i, s in enumerate(Severity)])
        assert result.delivered == 4 and not result.failed
        for s in Severity:
            text = (tmp_path / "logs" / f"{s.value.lower()}.log").read_text()
            assert f" {s.value} ewspipe.drift.ks_drift [global] alert " in text
            assert "value=1234 threshold=100" in text
        handler = sink.handlers[Severity.WARNING]
        assert (handler.when, handler.backupCount, handler.utc) == ("MIDNIGHT", 2, True)
        # old rotated files beyond the retention are deleted at the next rollover
        for day in ("2020-01-01", "2020-01-02", "2020-01-03"):
            (tmp_path / "logs" / f"warning.log.{day}").write_text("old\n")
        handler.doRollover()
        sink.deliver([_alert(Severity.WARNING, 99)])
        rotated = sorted(p.name for p in (tmp_path / "logs").glob("warning.log.*"))
        assert len(rotated) == 2 and "warning.log.2020-01-01" not in rotated
        assert "alert 99" in (tmp_path / "logs" / "warning.log").read_text()
    finally:
        sink.close()


# ------------------------------------------------------------------ webhook server


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict]
    calls: dict[str, int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.path.split("/")[1]
        self.calls[kind] = self.calls.get(kind, 0) + 1
        if kind == "slow":
            time.sleep(1.5)
        status = {"ok": 200, "bad": 400, "down": 503}.get(kind, 200)
        if kind == "flaky":
            status = 500 if self.calls[kind] == 1 else 200
        if status == 200:
            self.received.append({"path": self.path, "body": json.loads(body),
                                  "type": self.headers["Content-Type"]})
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"error")
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, _Hook]]:
    handler = type("Hook", (_Hook,), {"received": [], "calls": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _webhook(monkeypatch, url: str, **kw) -> WebhookSink:
    monkeypatch.setenv("TEST_HOOK_URL", url)
    sleeps: list[float] = []
    sink = WebhookSink("TEST_HOOK_URL", sleep=sleeps.append, **kw)
    sink.sleeps = sleeps  # type: ignore[attr-defined]
    return sink


def test_webhook_posts_slack_text(hook, monkeypatch):
    base, handler = hook
    sink = _webhook(monkeypatch, f"{base}/ok/{SECRET}")
    result = sink.deliver([_alert(Severity.WARNING, 1), _alert(Severity.CRITICAL, 2)])
    assert result.delivered == 2 and result.attempts == 1 and not result.failed
    [got] = handler.received
    assert got["type"] == "application/json" and set(got["body"]) == {"text"}
    text = got["body"]["text"]
    assert text.startswith("ewspipe: 2 alerts (worst CRITICAL)")
    assert text.index("alert 2") < text.index("alert 1")  # worst first


def test_webhook_retries_after_a_500(hook, monkeypatch):
    base, handler = hook
    sink = _webhook(monkeypatch, f"{base}/flaky/{SECRET}", retries=3, backoff_seconds=0.5)
    result = sink.deliver([_alert()])
    assert not result.failed and result.attempts == 2
    assert handler.calls["flaky"] == 2 and sink.sleeps == [0.5]


def test_webhook_gives_up_with_backoff_and_never_raises(hook, monkeypatch):
    base, handler = hook
    sink = _webhook(monkeypatch, f"{base}/down/{SECRET}", retries=3, backoff_seconds=1.0)
    result = sink.deliver([_alert()])
    assert result.failed and result.attempts == 4 and handler.calls["down"] == 4
    assert sink.sleeps == [1.0, 2.0, 4.0]  # exponential backoff
    assert "HTTP 503" in result.error and SECRET not in result.error


def test_webhook_client_error_is_not_retried(hook, monkeypatch):
    base, _ = hook
    result = _webhook(monkeypatch, f"{base}/bad/{SECRET}", retries=3).deliver([_alert()])
    assert result.failed and result.attempts == 1 and "HTTP 400" in result.error


def test_webhook_timeout_does_not_crash(hook, monkeypatch):
    base, _ = hook
    sink = _webhook(monkeypatch, f"{base}/slow/{SECRET}", timeout=0.3, retries=1)
    start = time.monotonic()
    result = sink.deliver([_alert()])
    assert result.failed and result.attempts == 2
    assert time.monotonic() - start < 1.4
    assert ("0.3 s" in result.error or "timed out" in result.error) and SECRET not in result.error


def test_webhook_unreachable_and_unset(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _webhook(monkeypatch, f"http://127.0.0.1:{port}/{SECRET}", retries=1).deliver(
        [_alert()])
    assert result.failed and "connection failed" in result.error and SECRET not in result.error
    monkeypatch.delenv("TEST_HOOK_URL")
    result = WebhookSink("TEST_HOOK_URL").deliver([_alert()])
    assert result.failed and result.error.startswith("$TEST_HOOK_URL is not set")
    monkeypatch.setenv("TEST_HOOK_URL", f"file:///etc/{SECRET}")
    result = WebhookSink("TEST_HOOK_URL").deliver([_alert()])
    assert "does not hold an http(s) URL" in result.error and SECRET not in result.error


# ------------------------------------------------------------------ SMTP server


@dataclass
class Envelope:
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    content: bytes = b""


class _TinySmtp(socketserver.StreamRequestHandler):
    """Enough SMTP for smtplib (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT): the fallback when
    aiosmtpd is not installed."""

    received: list

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 tiny ESMTP")
        env = Envelope()
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250-tiny\r\n250 AUTH PLAIN")
            elif verb == "AUTH":
                fields = base64.b64decode(cmd.split()[2]).decode().split("\0")
                ok = fields[1:] == ["alerts", PASSWORD]
                self._say("235 ok" if ok else "535 authentication failed")
            elif verb == "MAIL":
                env.mail_from = cmd.split(":", 1)[1].strip().strip("<>").split(">")[0]
                self._say("250 ok")
            elif verb == "RCPT":
                env.rcpt_tos.append(cmd.split(":", 1)[1].strip().strip("<>"))
                self._say("250 ok")
            elif verb == "DATA":
                self._say("354 go on")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                env.content = b"".join(lines)
                self.received.append(env)
                env = Envelope()
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list]]:
    """SMTP on 127.0.0.1 accepting AUTH with PASSWORD; messages land in the list. aiosmtpd
    (the test dependency) when installed, else the tiny server above."""
    received: list = []
    try:
        import aiosmtpd.controller as controller_mod
        from aiosmtpd.smtp import AuthResult
    except ImportError:
        handler = type("Tiny", (_TinySmtp,), {"received": received})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield server.server_address[1], received
        finally:
            server.shutdown()
            server.server_close()
        return

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = controller_mod.Controller(
        Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def _email(port: int, **kw) -> EmailSink:
    defaults = dict(host="127.0.0.1", port=port, sender="ewspipe@example.org",
                    to=["ops@example.org", "lead@example.org"], starttls=False,
                    username="alerts", password_env="TEST_SMTP_PASSWORD", timeout=5,
                    retries=0, sleep=lambda s: None)
    return EmailSink(**{**defaults, **kw})


def test_email_is_received(smtp_server, monkeypatch):
    port, received = smtp_server
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    result = _email(port).deliver([_alert(Severity.CRITICAL, 7), _alert(Severity.ERROR, 8)])
    assert not result.failed and result.delivered == 2
    [envelope] = received
    assert envelope.mail_from == "ewspipe@example.org"
    assert envelope.rcpt_tos == ["ops@example.org", "lead@example.org"]
    msg = message_from_bytes(envelope.content)
    assert msg["Subject"] == "ewspipe: 2 alerts (worst CRITICAL)"
    assert "alert 7" in msg.get_payload() and PASSWORD not in envelope.content.decode()


def test_email_failures_never_raise_nor_show_the_password(smtp_server, monkeypatch):
    port, received = smtp_server
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD[::-1])  # wrong password
    result = _email(port, timeout=1).deliver([_alert()])
    assert result.failed and result.error.startswith(f"e-mail via 127.0.0.1:{port} failed")
    assert PASSWORD[::-1] not in result.error and received == []
    result = _email(port, starttls=True).deliver([_alert()])  # server offers no STARTTLS
    assert result.failed and "STARTTLS" in result.error.upper()
    monkeypatch.delenv("TEST_SMTP_PASSWORD")
    result = _email(port).deliver([_alert()])
    assert result.failed and result.error.startswith("$TEST_SMTP_PASSWORD is not set")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = _email(closed, username=None, retries=1).deliver([_alert()])
    assert result.failed and result.attempts == 2


# ------------------------------------------------------------------ MLflow


class FakeMlflow:
    def __init__(self, fail: bool = False) -> None:
        self.tags: dict[tuple[str, str], str] = {}
        self.texts: dict[str, str] = {}
        self.fail = fail

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        if self.fail:
            raise ConnectionError("tracking server unreachable")
        self.tags[(run_id, key)] = value

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text


def test_mlflow_tags_and_artifact():
    client = FakeMlflow()
    alerts = [_alert(Severity.WARNING, 1), _alert(Severity.CRITICAL, 2, details={"x": 1})]
    assert attach_alerts_to_mlflow(client, "run-1", alerts) == 2
    assert client.tags[("run-1", "ewspipe.alerts.count")] == "2"
    assert client.tags[("run-1", "ewspipe.alerts.max_severity")] == "CRITICAL"
    assert "alert 2" in client.tags[("run-1", "ewspipe.alert.000")]
    lines = client.texts["ewspipe/alerts.jsonl"].splitlines()
    assert [json.loads(x)["message"] for x in lines] == ["alert 2", "alert 1"]
    many = [_alert(n=i) for i in range(130)]
    assert attach_alerts_to_mlflow(client, "run-2", many, artifact=False) == 100
    assert client.tags[("run-2", "ewspipe.alerts.truncated")] == "30"


def test_mlflow_sink_failure_is_a_result():
    result = MlflowSink(FakeMlflow(fail=True), "run-1").deliver([_alert()])
    assert result.failed and "ConnectionError" in result.error


# ------------------------------------------------------------------ router


def _settings(**alerts) -> AlertSettings:
    return AlertSettings.model_validate(alerts)


def test_router_routes_by_severity(tmp_path, hook, monkeypatch):
    base, handler = hook
    monkeypatch.setenv("TEST_HOOK_URL", f"{base}/ok/{SECRET}")
    settings = _settings(webhook={"enabled": True, "url_env": "TEST_HOOK_URL",
                                  "min_severity": "ERROR"},
                         log={"min_severity": "WARNING"}, mlflow={"min_severity": "CRITICAL"})
    client = FakeMlflow()
    alerts = [_alert(Severity.INFO, 1), _alert(Severity.WARNING, 2), _alert(Severity.CRITICAL, 3)]
    with build_router(settings, tmp_path, mlflow=(client, "run-9")) as router:
        report = router.route(alerts)
    sinks = report.to_dict()["sinks"]
    assert sinks["jsonl"]["delivered"] == 3 and sinks["log"]["delivered"] == 2
    assert sinks["webhook"]["delivered"] == 1 and sinks["mlflow"]["delivered"] == 1
    text = handler.received[0]["body"]["text"]
    assert "alert 3" in text and "alert 2" not in text
    assert not (tmp_path / "logs" / "info.log").exists()
    assert (tmp_path / "logs" / "critical.log").is_file()
    assert client.tags[("run-9", "ewspipe.alerts.count")] == "1"
    assert len(AlertLog.in_state_dir(tmp_path).read()) == 3


def test_failed_delivery_is_recorded_never_raised_never_leaks(tmp_path, hook, monkeypatch):
    base, _ = hook
    monkeypatch.setenv("TEST_HOOK_URL", f"{base}/down/{SECRET}")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = _settings(
        webhook={"enabled": True, "url_env": "TEST_HOOK_URL", "retries": 1,
                 "backoff_seconds": 0, "min_severity": "WARNING"},
        email={"enabled": True, "host": "127.0.0.1", "port": closed, "starttls": False,
               "to": ["ops@example.org"], "username": "alerts",
               "password_env": "TEST_SMTP_PASSWORD", "retries": 0, "min_severity": "WARNING"},
    )
    with build_router(settings, tmp_path) as router:
        report = router.route([_alert(Severity.CRITICAL)])
    assert {r.sink for r in report.failures} == {"webhook", "email"}
    recorded = AlertLog.in_state_dir(tmp_path).read(source=DELIVERY_SOURCE)
    assert [a.offender for a in recorded] == ["webhook", "email"]
    assert all(a.severity is Severity.ERROR for a in recorded)
    assert "HTTP 503" in recorded[0].message
    assert "delivery of 1 alert failed" in (tmp_path / "logs" / "error.log").read_text()
    written = _everything_written(tmp_path)
    assert SECRET not in written and PASSWORD not in written
    assert SECRET not in json.dumps(report.to_dict()) and PASSWORD not in str(report.to_dict())


def test_digest_is_bounded():
    text = digest([_alert(n=i) for i in range(100)], limit=5)
    assert text.splitlines()[0] == "ewspipe: 100 alerts (worst WARNING)"
    assert text.splitlines()[-1] == "... and 95 more (ewspipe alerts list)"


# ------------------------------------------------------------------ settings


def test_repository_file_documents_the_alert_defaults():
    assert load_settings(REPO / "ewspipe.toml").alerts == load_settings().alerts


def test_a_secret_pasted_into_settings_is_refused_without_echo(tmp_path):
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(f'[alerts.webhook]\nurl_env = "https://hooks.example.org/{SECRET}"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert "alerts.webhook.url_env" in str(info.value)
    assert "NAME of an environment variable" in str(info.value)
    assert SECRET not in str(info.value)


def test_email_enabled_needs_recipients(tmp_path):
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text("[alerts.email]\nenabled = true\n")
    with pytest.raises(SettingsError, match="`to` is empty"):
        load_settings(cfg)


def test_secrets_never_reach_cli_output(cli, state_dir, tmp_path, hook, monkeypatch):
    """A failing drift check with a broken webhook and SMTP: nothing prints the secrets."""
    base, _ = hook
    monkeypatch.setenv("TEST_HOOK_URL", f"{base}/down/{SECRET}")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    cfg = tmp_path / "secret.toml"
    cfg.write_text(
        '[alerts.webhook]\nenabled = true\nurl_env = "TEST_HOOK_URL"\nretries = 0\n'
        'min_severity = "WARNING"\n'
        '[alerts.email]\nenabled = true\nhost = "127.0.0.1"\nport = 9\nstarttls = false\n'
        'to = ["ops@example.org"]\nusername = "alerts"\npassword_env = "TEST_SMTP_PASSWORD"\n'
        'retries = 0\ntimeout_seconds = 2\n'
    )
    assert cli("--config", str(cfg), "data", "demo", "--countries", "30", "--pgm-cells", "60",
               "--last-month", "170").code == 0
    for args in (("drift", "check", "--level", "pgm"), ("drift", "check", "--json"),
                 ("alerts", "list"), ("alerts", "list", "--json")):
        res = cli("--config", str(cfg), *args)
        assert res.code in (0, 1), res.err
        assert SECRET not in res.out + res.err and PASSWORD not in res.out + res.err
    written = _everything_written(state_dir)
    assert SECRET not in written and PASSWORD not in written
    assert os.environ["TEST_HOOK_URL"].endswith(SECRET)  # the secret was really there
