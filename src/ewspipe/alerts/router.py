"""Route alerts to sinks by severity, as ``[alerts]`` in ewspipe.toml says.

* ``<state_dir>/alerts.jsonl`` gets every alert, always;
* ``<state_dir>/logs/<level>.log`` gets alerts at or above ``[alerts.log] min_severity``;
* the webhook and e-mail get alerts at or above their ``min_severity`` when ``enabled``;
* an MLflow run gets alerts at or above ``[alerts.mlflow] min_severity`` when the caller
  passes a client and run id (the tracking store owns the run; this module only tags it).

A failed delivery never raises: it becomes an ``alerts.delivery`` alert (ERROR) in the
JSONL log and the log files, with secrets scrubbed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ewspipe.alerts.log import AlertLog
from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.sinks import (
    EmailSink,
    JsonlSink,
    LogFileSink,
    MlflowSink,
    Sink,
    SinkResult,
    WebhookSink,
)
from ewspipe.layout import StateFolder
from ewspipe.settings import AlertSettings

__all__ = ["AlertRouter", "DeliveryReport", "Route", "build_router"]

DELIVERY_SOURCE = "alerts.delivery"


@dataclass(frozen=True)
class Route:
    sink: Sink
    min_severity: Severity


@dataclass
class DeliveryReport:
    alerts: int
    results: list[SinkResult] = field(default_factory=list)

    @property
    def failures(self) -> list[SinkResult]:
        return [r for r in self.results if r.failed]

    def to_dict(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "sinks": {r.sink: r.to_dict() for r in self.results}}


class AlertRouter:
    """Deliver alerts to every route whose ``min_severity`` they reach.

    ``jsonl`` and ``log`` also receive the failure records of the other routes. Use as a
    context manager (or call :meth:`close`) to release the log files.
    """

    def __init__(self, jsonl: JsonlSink, routes: Sequence[Route] = (),
                 log: LogFileSink | None = None, log_min: Severity = Severity.INFO) -> None:
        self.jsonl = jsonl
        self.log = log
        self.log_min = log_min
        self.routes = list(routes)

    def route(self, alerts: Sequence[Alert]) -> DeliveryReport:
        """Deliver ``alerts``; returns what each sink did. Only the JSONL log may raise
        (:class:`~ewspipe.errors.StoreError`: the record of truth could not be written)."""
        report = DeliveryReport(alerts=len(alerts))
        if not alerts:
            return report
        report.results.append(self.jsonl.deliver(alerts))
        self._log(alerts, report)
        for route in self.routes:
            chosen = [a for a in alerts if a.severity.rank >= route.min_severity.rank]
            if not chosen:
                continue
            try:
                result = route.sink.deliver(chosen)
            except Exception as exc:  # a sink bug must not take the pipeline down
                result = SinkResult(route.sink.name, 0, f"{type(exc).__name__}: {exc}")
            report.results.append(result)
            if result.failed:
                failure = Alert(
                    source=DELIVERY_SOURCE, severity=Severity.ERROR,
                    message=f"{result.sink} delivery of {len(chosen)} alert"
                    f"{'s' if len(chosen) != 1 else ''} failed: {result.error}",
                    offender=result.sink,
                    details={"sink": result.sink, "attempts": result.attempts,
                             "alerts": len(chosen)},
                )
                self.jsonl.deliver([failure])
                self._log([failure], report=None)
        return report

    def _log(self, alerts: Sequence[Alert], report: DeliveryReport | None) -> None:
        if self.log is None:
            return
        chosen = [a for a in alerts if a.severity.rank >= self.log_min.rank]
        if not chosen:
            return
        try:
            result = self.log.deliver(chosen)
        except OSError as exc:
            result = SinkResult(self.log.name, 0, f"{type(exc).__name__}: {exc}")
        if report is not None:
            report.results.append(result)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> AlertRouter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def build_router(
    settings: AlertSettings,
    state_dir: Path,
    *,
    mlflow: tuple[Any, str] | None = None,
) -> AlertRouter:
    """The router ``[alerts]`` describes, writing under ``state_dir``.

    Args:
        settings: the ``[alerts]`` section.
        state_dir: where ``alerts.jsonl`` and ``logs/`` live.
        mlflow: ``(client, run_id)`` to also tag an MLflow run.
    """
    state_dir = Path(state_dir)
    routes: list[Route] = []
    web = settings.webhook
    if web.enabled:
        routes.append(Route(WebhookSink(web.url_env, timeout=web.timeout_seconds,
                                        retries=web.retries,
                                        backoff_seconds=web.backoff_seconds),
                            Severity(web.min_severity)))
    mail = settings.email
    if mail.enabled:
        routes.append(Route(EmailSink(
            host=mail.host, port=mail.port, sender=mail.sender, to=mail.to,
            starttls=mail.starttls, username=mail.username, password_env=mail.password_env,
            timeout=mail.timeout_seconds, retries=mail.retries,
            backoff_seconds=mail.backoff_seconds,
        ), Severity(mail.min_severity)))
    if mlflow is not None:
        client, run_id = mlflow
        routes.append(Route(MlflowSink(client, run_id), Severity(settings.mlflow.min_severity)))
    return AlertRouter(
        JsonlSink(AlertLog.in_state_dir(state_dir)),
        routes,
        log=LogFileSink(StateFolder(state_dir).logs, retention_days=settings.log.retention_days),
        log_min=Severity(settings.log.min_severity),
    )
