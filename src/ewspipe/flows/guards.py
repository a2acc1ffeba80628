"""Freshness guards: what a production run checks before it publishes anything.

A forecast may be published only when all of these hold (``[qa]`` in ewspipe.toml):

* **snapshot age**: the data snapshot was fetched at most ``max_snapshot_age_days`` ago
  (manifest ``fetched_at``);
* **last month**: the snapshot's last observed month is the expected one: ``[qa]
  expected_last_month`` when set, else the last complete calendar month minus
  ``publication_lag_months`` (or the ``expected_last_month`` argument, which wins);
* **artifacts**: every model artifact used was trained on the run's snapshot (artifact
  manifest ``snapshot_id``).

:func:`check_freshness` raises :class:`GuardFailed` (exit code 1) naming every failed guard
and what to refresh; :func:`freshness_report` returns the same checks without raising, and
:func:`check_run_freshness` applies them to a stored forecast run (each level's snapshot and
every model's artifact). **Publishing must call** :func:`check_run_freshness` (or
:func:`check_freshness`) first and stop on :class:`GuardFailed`. Operators run the same checks
with ``ewspipe qa guards``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec

from ewspipe.errors import CheckFailed, InputError
from ewspipe.panel.months import last_complete_month_id, month_label
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.artifacts import ArtifactManifest, ArtifactStore
from ewspipe.store.runs import RunStore

_P = ParamSpec("_P")

__all__ = [
    "GuardCheck",
    "GuardFailed",
    "GuardReport",
    "check_freshness",
    "check_run_freshness",
    "expected_last_month",
    "freshness_report",
    "run_freshness_report",
]


class GuardFailed(CheckFailed):
    """A freshness guard failed: do not publish; the message says what to refresh."""


@dataclass(frozen=True)
class GuardCheck:
    guard: str  # snapshot_age, last_month, artifact
    subject: str  # the snapshot id, or the model
    passed: bool
    detail: str
    fix: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GuardReport:
    checks: list[GuardCheck]
    checked_at: str
    expected_last_month: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GuardCheck]:
        return [c for c in self.checks if not c.passed]

    def message(self) -> str:
        if self.passed:
            return f"all {len(self.checks)} freshness guards pass"
        lines = [f"refusing to publish: {len(self.failures)} freshness guard"
                 f"{'s' if len(self.failures) != 1 else ''} failed"]
        lines += [f"  - {c.detail}; {c.fix}" for c in self.failures]
        return "\n".join(lines)

    def raise_if_failed(self) -> GuardReport:
        if not self.passed:
            raise GuardFailed(self.message())
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checked_at": self.checked_at,
                "expected_last_month": self.expected_last_month,
                "expected_last_month_label": month_label(self.expected_last_month),
                "checks": [c.to_dict() for c in self.checks],
                "message": self.message()}


def _now(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def expected_last_month(settings: Settings, *, now: datetime | None = None) -> int:
    """``[qa] expected_last_month``, else last complete calendar month - publication lag."""
    if settings.qa.expected_last_month is not None:
        return settings.qa.expected_last_month
    return last_complete_month_id(_now(now).date()) - settings.qa.publication_lag_months


def _parse_time(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            parsed = datetime.strptime(text, fmt)
        except (TypeError, ValueError):
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _import_hint(m: Manifest) -> str:
    kind = (m.source or {}).get("kind")
    if kind == "demo":
        return "`ewspipe data demo`"
    if kind == "ucdp_ged_download":
        return "`ewspipe data pull ucdp --version VERSION`"
    if kind == "ucdp_ged":
        return "`ewspipe data import ged FILE` (or `ewspipe data pull ucdp`)"
    return f"`ewspipe data import panel FILE --level {m.level}`"


def _snapshot_checks(settings: Settings, m: Manifest, expected: int, now: datetime,
                     given: bool = False
                     ) -> list[GuardCheck]:
    checks = []
    limit = settings.qa.max_snapshot_age_days
    fetched = _parse_time(m.fetched_at)
    refresh = (f"refresh the {m.level} data: import a current release with {_import_hint(m)}, "
               f"then re-run `ewspipe forecast`")
    if fetched is None:
        checks.append(GuardCheck(
            "snapshot_age", m.id, False,
            f"snapshot {m.id} ({m.level}) has an unreadable fetched_at {m.fetched_at!r}",
            refresh, {"fetched_at": m.fetched_at}))
    else:
        age = (now - fetched).total_seconds() / 86400
        ok = age <= limit
        checks.append(GuardCheck(
            "snapshot_age", m.id, ok,
            f"snapshot {m.id} ({m.level}) was fetched {m.fetched_at}, {age:.1f} days ago "
            f"({'within' if ok else 'beyond'} [qa] max_snapshot_age_days = {limit:g})",
            "" if ok else refresh,
            {"fetched_at": m.fetched_at, "age_days": round(age, 3), "max_age_days": limit}))
    ok = m.last_month == expected
    how = ("the expected_last_month given" if given
           else "[qa] expected_last_month" if settings.qa.expected_last_month is not None
           else f"last complete month minus [qa] publication_lag_months = "
           f"{settings.qa.publication_lag_months}")
    if m.last_month < expected:
        fix = (f"import {m.level} data through {month_label(expected)} ({expected}) with "
               f"{_import_hint(m)}, then re-run `ewspipe forecast`")
    else:
        fix = (f"the snapshot runs past the expected month: check the data source, or set "
               f"[qa] expected_last_month = {m.last_month} (or publication_lag_months) if "
               "that month is intended")
    checks.append(GuardCheck(
        "last_month", m.id, ok,
        f"snapshot {m.id} ({m.level}) ends {month_label(m.last_month)} ({m.last_month}); "
        f"expected {month_label(expected)} ({expected}, {how})",
        "" if ok else fix,
        {"last_month": m.last_month, "expected": expected}))
    return checks


def _artifact_fields(a: ArtifactManifest | Mapping[str, Any]) -> tuple[str, str, str]:
    if isinstance(a, ArtifactManifest):
        return a.model, a.snapshot_id, a.directory
    return str(a.get("model")), str(a.get("snapshot_id")), str(a.get("directory", ""))


def _artifact_checks(m: Manifest, artifacts: Iterable[ArtifactManifest | Mapping[str, Any]]
                     ) -> list[GuardCheck]:
    checks = []
    for a in artifacts:
        model, snap, directory = _artifact_fields(a)
        ok = snap == m.id
        checks.append(GuardCheck(
            "artifact", model, ok,
            f"model {model}'s artifact {directory or '?'} was trained on snapshot {snap}"
            + ("" if ok else f", not on the run's {m.id}"),
            "" if ok else (f"retrain it on the run's data: `ewspipe forecast --snapshot {m.id} "
                           f"--model {model}` (an artifact is reused only for the same "
                           "snapshot)"),
            {"model": model, "artifact": directory, "snapshot_id": snap, "expected": m.id}))
    return checks


def freshness_report(
    settings: Settings,
    *,
    snapshot_manifest: Manifest | Sequence[Manifest],
    expected_last_month: int | None = None,
    artifacts: Iterable[ArtifactManifest | Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> GuardReport:
    """Every guard (module docstring) on the snapshot(s) and artifacts, without raising.

    ``artifacts``: artifact manifests (or mappings with model, snapshot_id, directory) that
    must have been trained on ``snapshot_manifest`` (a single one: with several snapshots,
    use :func:`check_run_freshness`, which matches artifacts to their level).
    """
    when = _now(now)
    expected = expected_last_month if expected_last_month is not None else \
        _expected(settings, when)
    manifests = [snapshot_manifest] if isinstance(snapshot_manifest, Manifest) \
        else list(snapshot_manifest)
    if not manifests:
        raise InputError("no snapshot to check; import data first (`ewspipe data list`)")
    given = expected_last_month is not None
    checks = [c for m in manifests
              for c in _snapshot_checks(settings, m, expected, when, given)]
    listed = list(artifacts)
    if listed:
        if len(manifests) != 1:
            raise InputError("artifacts can be checked against one snapshot at a time; use "
                             "check_run_freshness for a run with several levels")
        checks += _artifact_checks(manifests[0], listed)
    return GuardReport(checks, when.strftime("%Y-%m-%dT%H:%M:%SZ"), expected)


def _expected(settings: Settings, when: datetime) -> int:
    return expected_last_month(settings, now=when)


def run_freshness_report(
    settings: Settings,
    run_id: str,
    *,
    expected_last_month: int | None = None,
    now: datetime | None = None,
) -> GuardReport:
    """The guards on a stored forecast run: each level's snapshot, each model's artifact."""
    record = RunStore(settings.runs_dir).get(run_id)
    if record.get("kind") != "forecast":
        raise InputError(f"run {record.get('run_id')} is a {record.get('kind')} run; only "
                         "forecast runs are published")
    snapshots = SnapshotStore(settings.snapshot_dir)
    artifacts = ArtifactStore(settings.artifact_dir)
    when = _now(now)
    expected = expected_last_month if expected_last_month is not None else \
        _expected(settings, when)
    checks: list[GuardCheck] = []
    for level, snap in sorted((record.get("snapshots") or {}).items()):
        manifest = snapshots.get(snap["id"])
        checks += _snapshot_checks(settings, manifest, expected, when,
                                   expected_last_month is not None)
        used = []
        for entry in record.get("models") or []:
            if entry.get("level") != level or not entry.get("artifact"):
                continue  # ensembles have no artifact of their own
            found = [a for a in artifacts.list(entry["model"])
                     if a.directory == entry["artifact"]]
            if found:
                used.append(found[0])
            else:
                checks.append(GuardCheck(
                    "artifact", entry["model"], False,
                    f"model {entry['model']}'s artifact {entry['artifact']} is missing from "
                    f"{settings.artifact_dir}",
                    f"re-run `ewspipe forecast --snapshot {manifest.id} --model "
                    f"{entry['model']}` to retrain it",
                    {"model": entry["model"], "artifact": entry["artifact"]}))
        checks += _artifact_checks(manifest, used)
    return GuardReport(checks, when.strftime("%Y-%m-%dT%H:%M:%SZ"), expected)


def _raising(report: Callable[_P, GuardReport], name: str, doc: str) -> Callable[_P, GuardReport]:
    """``report`` (same arguments), raising :class:`GuardFailed` when any guard fails."""
    @functools.wraps(report)
    def check(*args: _P.args, **kwargs: _P.kwargs) -> GuardReport:
        return report(*args, **kwargs).raise_if_failed()

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    return check


check_freshness = _raising(
    freshness_report, "check_freshness",
    ":func:`freshness_report`, raising :class:`GuardFailed` when any guard fails.")
check_run_freshness = _raising(
    run_freshness_report, "check_run_freshness",
    ":func:`run_freshness_report`, raising :class:`GuardFailed` when any guard fails.\n\n"
    "This is the call publishing makes before moving anything.")
