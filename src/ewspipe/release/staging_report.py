"""The staging report: one result per gate and the report around them (JSON round-trip).

Kept apart from :mod:`ewspipe.release.staging` so the gate functions can build results without
importing the orchestration; ``staging`` re-exports both classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GATES", "STATUSES", "GateResult", "StagingReport"]

GATES = ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff")
STATUSES = ("PASS", "WARN", "FAIL", "SKIP")


@dataclass(frozen=True)
class GateResult:
    gate: str
    status: str  # "PASS" | "WARN" | "FAIL" | "SKIP"
    summary: str
    evidence: dict[str, Any]

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"unknown gate {self.gate!r}; gates are {', '.join(GATES)}")
        if self.status not in STATUSES:
            raise ValueError(f"gate {self.gate}: status {self.status!r} is not one of "
                             f"{', '.join(STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "status": self.status, "summary": self.summary,
                "evidence": self.evidence}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(gate=d["gate"], status=d["status"], summary=d["summary"],
                   evidence=dict(d.get("evidence") or {}))


@dataclass(frozen=True)
class StagingReport:
    candidate_commit: str
    candidate_ref: str
    production_commit: str | None
    snapshots: dict[str, str]
    gates: tuple[GateResult, ...]
    started_at: str
    finished_at: str
    json_path: str
    html_path: str
    # the engine the candidate ran with (release.manifest.release_engine); a promotion
    # refuses when the engine it would record differs (the release was validated by it)
    engine: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """No gate failed (WARN and SKIP do not block)."""
        return not self.failed_gates()

    def failed_gates(self) -> list[str]:
        return [g.gate for g in self.gates if g.status == "FAIL"]

    def gate(self, name: str) -> GateResult:
        for g in self.gates:
            if g.gate == name:
                return g
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_commit": self.candidate_commit, "candidate_ref": self.candidate_ref,
            "production_commit": self.production_commit, "snapshots": dict(self.snapshots),
            "passed": self.passed, "failed_gates": self.failed_gates(),
            "gates": [g.to_dict() for g in self.gates],
            "started_at": self.started_at, "finished_at": self.finished_at,
            "json_path": self.json_path, "html_path": self.html_path,
            "engine": self.engine,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagingReport:
        return cls(
            candidate_commit=d["candidate_commit"], candidate_ref=d["candidate_ref"],
            production_commit=d.get("production_commit"), snapshots=dict(d["snapshots"]),
            gates=tuple(GateResult.from_dict(g) for g in d["gates"]),
            started_at=d["started_at"], finished_at=d["finished_at"],
            json_path=d["json_path"], html_path=d["html_path"], engine=d.get("engine"),
        )
