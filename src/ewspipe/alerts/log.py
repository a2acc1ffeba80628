"""The alert log: ``<state_dir>/alerts.jsonl``, one JSON alert per line, append-only.

Every alert lands here whatever else is configured. Each record is written with a single
``write`` on a file opened with ``O_APPEND``, under an exclusive ``flock`` (and a process
lock), then flushed to disk, so concurrent writers (two imports, an import and a run) never
interleave or tear lines.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ewspipe.alerts.records import Alert, Severity
from ewspipe.errors import InputError, IntegrityError, StoreError
from ewspipe.layout import StateFolder

try:  # POSIX; elsewhere the process lock alone serialises writers of one process
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["ALERTS_FILE", "AlertLog", "parse_severity", "parse_since"]

ALERTS_FILE = "alerts.jsonl"
_PROCESS_LOCK = threading.Lock()


def parse_since(text: str, *, option: str = "--since") -> datetime:
    """An ISO date or date-time (``2024-07-01``, ``2024-07-01T12:00``, ``...Z``); naive = UTC.

    Raises:
        InputError: for anything else, with an example.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"option {option}: {text!r} is not an ISO date or date-time; use e.g. "
            "2024-07-01 or 2024-07-01T12:00:00Z"
        ) from None
    try:  # 0001-01-01T00:00+01:00 is a valid ISO text but before the first UTC instant
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise InputError(
            f"option {option}: {text!r} lies outside the dates Python can hold in UTC "
            "(years 1-9999); use e.g. 2024-07-01"
        ) from None


def parse_severity(text: str, *, option: str = "--severity") -> Severity:
    """A severity name, case-insensitive.

    Raises:
        InputError: naming the valid levels.
    """
    try:
        return Severity(text.strip().upper())
    except ValueError:
        raise InputError(
            f"option {option}: unknown severity {text!r}; use one of "
            f"{', '.join(s.value for s in Severity)}"
        ) from None


def _time_of(alert: Alert) -> datetime:
    return parse_since(alert.time, option="time")


class AlertLog:
    """Append and read the JSON-lines alert log at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> AlertLog:
        return cls(StateFolder(state_dir).alerts_log)

    def append(self, alert: Alert) -> None:
        """Append one alert atomically (one write under an exclusive lock, then fsync).

        Raises:
            StoreError: when the file cannot be written (the state directory is read-only,
                the disk is full, ...).
        """
        self.extend([alert])

    def extend(self, alerts: Iterable[Alert]) -> int:
        """Append alerts, one atomic write each; returns how many were written."""
        lines = [
            (json.dumps(a.to_dict(), sort_keys=True, default=_json_default) + "\n").encode()
            for a in alerts
        ]
        if not lines:
            return 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _PROCESS_LOCK:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    for line in lines:
                        os.write(fd, line)
                        os.fsync(fd)
                finally:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot append to the alert log {self.path}: {exc.strerror or exc}; check "
                "that the state directory is writable"
            ) from exc
        return len(lines)

    def read(
        self,
        *,
        since: datetime | None = None,
        min_severity: Severity | None = None,
        source: str | None = None,
    ) -> list[Alert]:
        """Alerts in file order, optionally only those at or after ``since``, at or above
        ``min_severity`` and whose source starts with ``source``.

        Raises:
            StoreError: naming the line when a record cannot be parsed.
        """
        if not self.path.is_file():
            return []
        out = []
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:  # bytes: a line that is not UTF-8 is reported like any bad line
                    alert = Alert.from_dict(json.loads(line.decode("utf-8")))
                    when = _time_of(alert)
                except (ValueError, TypeError, KeyError, InputError) as exc:
                    raise IntegrityError(
                        f"{self.path}, line {number}: not an alert record ({exc}); the file "
                        "is append-only, so it was edited by hand: fix or delete that line"
                    ) from exc
                if since is not None and when < since:
                    continue
                if min_severity is not None and alert.severity.rank < min_severity.rank:
                    continue
                if source is not None and not alert.source.startswith(source):
                    continue
                out.append(alert)
        return out


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars in details
        return obj.item()
    return str(obj)
