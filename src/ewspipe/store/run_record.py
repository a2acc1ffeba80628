"""The monthly run's record, typed: what ``ewspipe run`` stores in its environment's state
database, prints with ``--json`` and the API serves.

One type for every reader (API, release gates, CLI, MLflow tracking) instead of each
digging through ``dict[str, Any]``. The stored JSON is unchanged: :meth:`MonthlyRunRecord.to_dict`
gives back exactly the keys a record was made from (``exclude_unset``), so a record read from
disk and written again is the same record, and an old record without the newer fields still
loads (they default to empty). Keys this type does not name are kept as they are.

A record is written three times per run: ``running`` (identity only), then ``failed`` (plus
``error``) or the finished record (every field); readers of a running or failed record see
the defaults for what it lacks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MonthlyRunRecord", "QASummary", "RunOutputs", "SnapshotUsed"]

_UNFINISHED = ("running", "failed", "interrupted")


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class SnapshotUsed(_Part):
    """One level's snapshot the run read (``id``, ``last_month``, ``sha256``, ...)."""

    id: str | None = None
    last_month: int | None = None


class QASummary(_Part):
    """The run's QA verdict and the checks that failed (``model``, ``problems``, ...)."""

    passed: bool | None = None
    failed: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def failed_models(self) -> list[str]:
        return [str(c.get("model", "?")) for c in self.failed]


class RunOutputs(_Part):
    """Where the run's outputs are and what it published (paths are absolute strings)."""

    predictions: str | None = None
    runs: dict[str, str] | None = None  # level -> run id in the prediction store
    partitions: list[dict[str, Any]] | None = None  # model, level, path (in the env state)...
    report: str | None = None
    published: list[dict[str, Any]] | None = None  # the pointers moved
    not_published: str | None = None  # why nothing was published (a publishing run)
    not_published_reasons: list[str] = Field(default_factory=list)
    alerts_log: str | None = None


class MonthlyRunRecord(_Part):
    """One monthly run (``MonthlyRun.record()``; a state database row; ``ewspipe run --json``)."""

    run_id: str
    environment: str | None = None
    executor: str | None = None
    status: str | None = None  # running | failed | interrupted | ok | qa_failed | not_published
    release: dict[str, Any] | str | None = None  # a publishing run's release (old: its tag)
    started_at: str | None = None
    seconds: float | None = None
    state: str | None = None
    ran: list[str] = Field(default_factory=list)
    reused: list[str] = Field(default_factory=list)
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    snapshots: dict[str, SnapshotUsed] | None = None  # by level
    drift: dict[str, dict[str, Any]] = Field(default_factory=dict)  # by level
    qa: QASummary | None = None
    output_drift: dict[str, Any] | None = None
    alerts: dict[str, Any] | None = None
    outputs: RunOutputs = Field(default_factory=RunOutputs)
    tracking: dict[str, Any] | None = None
    code: dict[str, Any] | None = None
    finished_at: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MonthlyRunRecord:
        """A stored or printed record (old ones too: missing fields take their defaults)."""
        return cls.model_validate(doc)

    @classmethod
    def from_output(cls, doc: dict[str, Any] | None) -> MonthlyRunRecord | None:
        """The record ``ewspipe run --json`` printed; None for its error document (no run)."""
        return cls.from_dict(doc) if doc and "run_id" in doc else None

    def to_dict(self) -> dict[str, Any]:
        """The record as stored: exactly the keys it was made from (see the module doc)."""
        return self.model_dump(exclude_unset=True)

    @property
    def finished(self) -> bool:
        """Ran to the end (``ok``, ``qa_failed`` or ``not_published``)."""
        return self.status not in _UNFINISHED

    @property
    def release_tag(self) -> str | None:
        """The release the run ran under: ``release``'s tag, else the one its published
        pointers record."""
        if isinstance(self.release, dict) and self.release.get("tag"):
            return str(self.release["tag"])
        if isinstance(self.release, str) and self.release:
            return self.release
        for pointer in self.outputs.published or []:
            tag = ((pointer or {}).get("release") or {}).get("tag")
            if tag:
                return str(tag)
        return None

    @property
    def qa_passed(self) -> bool | None:
        return self.qa.passed if self.qa is not None else None

    @property
    def snapshot_ids(self) -> dict[str, str]:
        """Level -> snapshot id (empty for a run that got no further than starting)."""
        return {lvl: s.id for lvl, s in (self.snapshots or {}).items() if s.id is not None}

    @property
    def selftest_failed(self) -> list[str]:
        """Levels whose drift detectors failed their self-test."""
        return [lvl for lvl, d in self.drift.items()
                if (d.get("selftest") or {}).get("passed") is False]
