"""Where alerts go: the JSONL log, per-level log files, a webhook, e-mail, MLflow tags.

Every sink takes a batch of alerts and returns a :class:`SinkResult`; the remote ones
(webhook, e-mail, MLflow) never raise: a failed delivery comes back as a result with the
error, which :mod:`ewspipe.alerts.router` records in the JSONL log and the log files.
Secrets (the webhook URL, the SMTP password) are read from environment variables whose
*names* are configured, and are scrubbed from every error message before it is stored.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any, Protocol

from ewspipe.alerts.log import AlertLog
from ewspipe.alerts.records import Alert, Severity

__all__ = [
    "LOG_DIR",
    "EmailSink",
    "JsonlSink",
    "LogFileSink",
    "MlflowSink",
    "Sink",
    "SinkResult",
    "WebhookSink",
    "attach_alerts_to_mlflow",
    "digest",
    "mlflow_client",
]

LOG_DIR = "logs"
_LOGGING_LEVEL = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}
_DIGEST_LINES = 40
_TAG_LIMIT = 5000  # MLflow accepts at least 5,000 characters in a tag value
_MLFLOW_TAGS = 100


@dataclass(frozen=True)
class SinkResult:
    sink: str
    delivered: int
    error: str | None = None
    attempts: int = 1

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return {"sink": self.sink, "delivered": self.delivered, "failed": self.failed,
                "error": self.error, "attempts": self.attempts}


class Sink(Protocol):
    name: str

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult: ...


def _redact(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _line(alert: Alert) -> str:
    where = f" [{alert.offender}]" if alert.offender else ""
    return f"{alert.severity.value:<8} {alert.source}{where}: {alert.message}"


def digest(alerts: Sequence[Alert], *, limit: int = _DIGEST_LINES) -> str:
    """Plain-text summary of a batch: a headline, then one line per alert (worst first)."""
    ordered = sorted(alerts, key=lambda a: -a.severity.rank)
    worst = ordered[0].severity.value if ordered else "-"
    lines = [f"ewspipe: {len(alerts)} alert{'s' if len(alerts) != 1 else ''} (worst {worst})"]
    lines += [_line(a) for a in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"... and {len(ordered) - limit} more (ewspipe alerts list)")
    return "\n".join(lines)


# ------------------------------------------------------------------ JSONL


class JsonlSink:
    """Appends every alert to ``<state_dir>/alerts.jsonl`` (see :class:`AlertLog`)."""

    name = "jsonl"

    def __init__(self, log: AlertLog) -> None:
        self.log = log

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult:
        return SinkResult(self.name, self.log.extend(alerts))


# ------------------------------------------------------------------ log files


class LogFileSink:
    """Python logging to one file per level (``info.log``, ``warning.log``, ...) under
    ``directory``, each rotated at midnight UTC and kept for ``retention_days`` days.

    The handlers belong to this sink, not to a global logger, so two state directories in one
    process never write into each other's files; :meth:`close` releases them.
    """

    name = "log"

    def __init__(self, directory: Path, *, retention_days: int = 30) -> None:
        self.directory = Path(directory)
        self.retention_days = retention_days
        self.directory.mkdir(parents=True, exist_ok=True)
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        formatter.converter = time.gmtime
        self.handlers: dict[Severity, TimedRotatingFileHandler] = {}
        for severity in Severity:
            handler = TimedRotatingFileHandler(
                self.directory / f"{severity.value.lower()}.log", when="midnight",
                backupCount=retention_days, utc=True, encoding="utf-8", delay=True,
            )
            handler.setFormatter(formatter)
            self.handlers[severity] = handler

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult:
        for alert in alerts:
            record = logging.LogRecord(
                name=f"ewspipe.{alert.source}", level=_LOGGING_LEVEL[alert.severity],
                pathname=__file__, lineno=0, msg="%s", args=(self._text(alert),),
                exc_info=None,
            )
            self.handlers[alert.severity].handle(record)
        return SinkResult(self.name, len(alerts))

    @staticmethod
    def _text(alert: Alert) -> str:
        extra = "".join(
            f" {k}={v:.4g}" for k, v in (("value", alert.value), ("threshold", alert.threshold))
            if v is not None
        )
        run = f" run={alert.run_id}" if alert.run_id else ""
        where = f" [{alert.offender}]" if alert.offender else ""
        return f"{where.strip()} {alert.message}{extra}{run}".strip()

    def close(self) -> None:
        for handler in self.handlers.values():
            handler.close()


# ------------------------------------------------------------------ webhook

Sleep = Callable[[float], None]
#: One delivery attempt: None when delivered, else (the error, whether another attempt can help).
Attempt = Callable[[], tuple[str, bool] | None]


class _RetryingSink:
    """What the network sinks share: a timeout per attempt and up to ``retries`` more attempts
    after the first, ``backoff_seconds`` * 2**(n-1) apart. Never raises."""

    name: str

    def __init__(self, *, timeout: float, retries: int, backoff_seconds: float,
                 sleep: Sleep) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    def _deliver(self, n_alerts: int, attempt_once: Attempt, what: str,
                 secrets: Sequence[str | None]) -> SinkResult:
        """Call ``attempt_once`` until it delivers, fails for good or the retries run out;
        a failure says ``what`` failed, with ``secrets`` redacted."""
        error = "no attempt made"
        attempt = 0
        for attempt in range(1, self.retries + 2):
            failure = attempt_once()
            if failure is None:
                return SinkResult(self.name, n_alerts, attempts=attempt)
            error, retry = failure
            if not retry or attempt > self.retries:
                break
            self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return SinkResult(
            self.name, 0, _redact(f"{what} failed after {attempt} attempt"
                                  f"{'s' if attempt != 1 else ''}: {error}", secrets),
            attempts=attempt,
        )


class WebhookSink(_RetryingSink):
    """POSTs ``{"text": digest}`` (Slack-compatible) to the URL in ``$<url_env>``.

    Retries connection errors, timeouts, 5xx, 408 and 429 up to ``retries`` times with
    exponential backoff (``backoff_seconds`` * 2**attempt); other 4xx answers are final.
    Never raises; the URL never appears in a result or log line.
    """

    name = "webhook"

    def __init__(
        self,
        url_env: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(timeout=timeout, retries=retries, backoff_seconds=backoff_seconds,
                         sleep=sleep)
        self.url_env = url_env

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult:
        url = os.environ.get(self.url_env, "").strip()
        if not url:
            return SinkResult(self.name, 0, f"${self.url_env} is not set; export the webhook "
                              "URL there or disable [alerts.webhook]", attempts=0)
        if not url.lower().startswith(("https://", "http://")):
            return SinkResult(self.name, 0, f"${self.url_env} does not hold an http(s) URL",
                              attempts=0)
        body = json.dumps({"text": digest(alerts)}).encode()
        return self._deliver(len(alerts), lambda: self._post(url, body), "webhook delivery",
                             [url])

    def _post(self, url: str, body: bytes) -> tuple[str, bool] | None:
        try:
            request = urllib.request.Request(
                url, data=body, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "ewspipe-alerts"},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} {exc.reason}", exc.code >= 500 or exc.code in (408, 429)
        except urllib.error.URLError as exc:
            return f"connection failed: {exc.reason}", True
        except TimeoutError:
            return f"no answer within {self.timeout:g} s", True
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}", True
        except ValueError as exc:  # a malformed URL: retrying cannot help
            return f"invalid URL ({type(exc).__name__}: {exc})", False


# ------------------------------------------------------------------ e-mail


class EmailSink(_RetryingSink):
    """Sends one e-mail per batch over SMTP (optionally STARTTLS, optionally logging in with
    the password in ``$<password_env>``). Never raises; the password is never shown."""

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        starttls: bool = True,
        username: str | None = None,
        password_env: str = "EWSPIPE_SMTP_PASSWORD",
        timeout: float = 10.0,
        retries: int = 1,
        backoff_seconds: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(timeout=timeout, retries=retries, backoff_seconds=backoff_seconds,
                         sleep=sleep)
        self.host = host
        self.port = port
        self.sender = sender
        self.to = tuple(to)
        self.starttls = starttls
        self.username = username
        self.password_env = password_env

    def message(self, alerts: Sequence[Alert]) -> EmailMessage:
        text = digest(alerts, limit=200)
        msg = EmailMessage()
        msg["Subject"] = text.splitlines()[0]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(text + "\n")
        return msg

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult:
        if not self.to:
            return SinkResult(self.name, 0, "no recipients ([alerts.email] to is empty)", 0)
        password = os.environ.get(self.password_env) if self.username else None
        if self.username and not password:
            return SinkResult(self.name, 0, f"${self.password_env} is not set; export the SMTP "
                              "password there", attempts=0)
        msg = self.message(alerts)
        return self._deliver(len(alerts), lambda: self._send(msg, password),
                             f"e-mail via {self.host}:{self.port}", [password])

    def _send(self, msg: EmailMessage, password: str | None) -> tuple[str, bool] | None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and password:
                    smtp.login(self.username, password)
                smtp.send_message(msg)
            return None
        except (smtplib.SMTPException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}", True


# ------------------------------------------------------------------ MLflow


def mlflow_client(tracking_uri: str | None = None) -> Any:
    """An ``mlflow.tracking.MlflowClient`` (MLflow is imported only here, only when called).

    Raises:
        ImportError: with an install hint when MLflow is absent.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MLflow is not installed; install it (pip install mlflow) to attach alerts to runs"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def attach_alerts_to_mlflow(
    client: Any, run_id: str, alerts: Sequence[Alert], *, artifact: bool = True
) -> int:
    """Record alerts on an MLflow run as tags (and, if ``artifact``, an ``alerts.jsonl``).

    Tags: ``ewspipe.alerts.count``, ``ewspipe.alerts.max_severity``, and one
    ``ewspipe.alert.NNN`` per alert (worst first, at most 100, each at most 5,000
    characters). Works with any object that has MLflow's ``set_tag(run_id, key, value)``
    (and ``log_text(run_id, text, artifact_file)`` for the artifact).

    Returns:
        The number of per-alert tags written.
    """
    ordered = sorted(alerts, key=lambda a: -a.severity.rank)
    client.set_tag(run_id, "ewspipe.alerts.count", str(len(ordered)))
    client.set_tag(run_id, "ewspipe.alerts.max_severity",
                   ordered[0].severity.value if ordered else "none")
    for i, alert in enumerate(ordered[:_MLFLOW_TAGS]):
        client.set_tag(run_id, f"ewspipe.alert.{i:03d}", _line(alert)[:_TAG_LIMIT])
    if len(ordered) > _MLFLOW_TAGS:
        client.set_tag(run_id, "ewspipe.alerts.truncated", str(len(ordered) - _MLFLOW_TAGS))
    if artifact and ordered and hasattr(client, "log_text"):
        text = "".join(json.dumps(a.to_dict(), sort_keys=True, default=str) + "\n"
                       for a in ordered)
        client.log_text(run_id, text, "ewspipe/alerts.jsonl")
    return min(len(ordered), _MLFLOW_TAGS)


class MlflowSink:
    """Attaches alerts to one MLflow run (see :func:`attach_alerts_to_mlflow`); never raises."""

    name = "mlflow"

    def __init__(self, client: Any, run_id: str, *, artifact: bool = True) -> None:
        self.client = client
        self.run_id = run_id
        self.artifact = artifact

    def deliver(self, alerts: Sequence[Alert]) -> SinkResult:
        try:
            attach_alerts_to_mlflow(self.client, self.run_id, alerts, artifact=self.artifact)
        except Exception as exc:  # a tracking server is remote: report, never crash the run
            return SinkResult(self.name, 0, f"MLflow run {self.run_id}: "
                              f"{type(exc).__name__}: {exc}")
        return SinkResult(self.name, len(alerts))
