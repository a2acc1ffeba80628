"""The alert record every producer emits; sinks (files, logs, webhooks, e-mail) consume it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["Alert", "Severity"]


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Alert:
    """One thing a human should know about: what, where (offender), how bad, which run."""

    source: str  # producer, e.g. "drift.ks_drift", "reconciliation", "non_negativity"
    severity: Severity
    message: str
    offender: str | None = None  # unit, month, model, ...
    value: float | None = None
    threshold: float | None = None
    run_id: str | None = None
    environment: str | None = None
    time: str = field(default_factory=_now)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**{**data, "severity": Severity(data["severity"])})
