"""The one rule that decides whether a monthly run's forecasts may be published.

Called by the monthly run's publish task and by the API's publish endpoint, so the two can
never disagree. A run may be published only when all of these hold, and the decision lists
every one that does not:

* the environment is a publishing one (``[run] publish_environments``);
* its QA passed and no drift self-test failed;
* its snapshots exist and pass the freshness guards (:mod:`ewspipe.flows.guards`) *now*;
* the workspace is a clean, completed production release and is exactly what that release
  validated (:func:`ewspipe.flows.release_guard.check_release`, :func:`verify_workspace`);
* the run itself was made by that release: same tag, commit and model set (a run of a
  rolled-back release, or of any other code, is never published under the current tag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ewspipe.catalog import Catalog, load_catalog
from ewspipe.catalog.rules import Status
from ewspipe.errors import EwspipeError, InputError
from ewspipe.flows.guards import freshness_report
from ewspipe.flows.release_guard import ReleaseGuardFailed, check_release, verify_workspace
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings

__all__ = ["PublishDecision", "decide_publish", "deployed_pointers", "publishes"]


def publishes(settings: Settings, environment: str) -> bool:
    """Whether a run of ``environment`` publishes (``[run] publish_environments``).

    Refuses (bad input) settings whose ``publish_environments`` names an environment that
    does not exist: the production run would otherwise succeed and silently publish nothing
    (issue 18). Settings are validated at load too; this is the run-time decision, so it
    never trusts that."""
    run = settings.run
    unknown = [e for e in run.publish_environments if e not in run.environments]
    if unknown:
        where = f" in {settings.source_file}" if settings.source_file is not None else ""
        raise InputError(
            f"[run] publish_environments{where} names {', '.join(map(repr, unknown))}, which "
            f"is not one of [run] environments ({', '.join(run.environments)}): no run would "
            "publish there and `ewspipe run --env production` would publish nothing; name "
            "existing environments (e.g. publish_environments = [\"production\"])")
    return environment in run.publish_environments


@dataclass
class PublishDecision:
    """Whether to publish, every reason not to, and the release to stamp on pointers."""

    allowed: bool
    reasons: list[str]
    checked_at: str
    release: dict[str, Any] | None = None
    guards: dict[str, Any] | None = field(default=None, repr=False)

    def message(self) -> str:
        if self.allowed:
            return "publishable"
        return "refusing to publish: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def decide_publish(
    settings: Settings,
    *,
    environment: str,
    run_release: Mapping[str, Any] | None,
    qa_passed: bool,
    qa_failed: Sequence[str] = (),
    selftest_failed: Sequence[str] = (),
    snapshot_ids: Iterable[str],
    catalog: Catalog | None = None,
    now: datetime | None = None,
) -> PublishDecision:
    """The publish decision for one monthly run (module docstring).

    ``run_release`` is the release record the run was started under (``MonthlyRun.release``;
    None for a run that was not made by a release); an engine override it carries is
    honoured, as the run already recorded it.
    """
    when = _now(now)
    reasons: list[str] = []
    if not publishes(settings, environment):
        reasons.append(f"environment {environment!r} does not publish ([run] "
                       "publish_environments)")
    if not qa_passed:
        reasons.append(f"QA failed for {', '.join(qa_failed) or 'the run'}")
    if selftest_failed:
        reasons.append(f"drift self-test failed for {', '.join(sorted(selftest_failed))}")
    guards = None
    store = SnapshotStore(settings.snapshot_dir)
    try:
        manifests = [store.get(s) for s in snapshot_ids]
    except EwspipeError as exc:
        reasons.append(f"a snapshot of the run is gone ({exc})")
        manifests = []
    if manifests:
        report = freshness_report(settings, snapshot_manifest=manifests, now=when)
        guards = report.to_dict()
        if not report.passed:
            reasons += [f"{c.detail}; {c.fix}" for c in report.failures]
    elif not reasons:
        reasons.append("the run has no snapshot")
    current = None
    try:
        release = check_release(settings)
        override = ((run_release or {}).get("engine_override") or {}).get("reason")
        current = verify_workspace(
            settings, release,
            catalog or load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir),
            allow_engine_change=override)
    except ReleaseGuardFailed as exc:
        reasons.append(str(exc).removeprefix("refusing to publish: "))
    if current is not None:
        if not run_release:
            reasons.append("the run was not made by a production release (no release "
                           "recorded on it)")
        else:
            for key, what in (("tag", "release"), ("commit", "commit"),
                              ("catalog_sha256", "model and ensemble set")):
                if run_release.get(key) != current.get(key):
                    reasons.append(
                        f"the run was made by {run_release.get('tag')} "
                        f"({str(run_release.get('commit'))[:12]}), but production is now "
                        f"{current['tag']} ({current['commit'][:12]}): its {what} differs; "
                        "only forecasts made by the current release are published (run "
                        "`ewspipe run --env production`)")
                    break
    allowed = not reasons
    return PublishDecision(allowed, reasons, when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           dict(run_release) if allowed and run_release else None, guards)


def deployed_pointers(parts: Iterable[Mapping[str, Any]], *, last_month: Mapping[str, int],
                      release: Mapping[str, Any], publish_id: str, published_at: str,
                      published_by: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One pointer per level and target over a run's stored forecasts: its deployed
    ensembles first, then deployed models (the first is the primary)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for part in parts:
        if part["status"] == Status.DEPLOYED.value:
            groups.setdefault((part["level"], part["target"]), []).append(part)
    pointers = []
    for (level, target), found in sorted(groups.items()):
        found = sorted(found, key=lambda p: (p["kind"] != "ensemble", p["model"]))
        pointers.append({
            "publish_id": publish_id, "level": level, "target": target, "run": found[0]["run"],
            "primary": found[0]["model"], "models": [p["model"] for p in found],
            "published_at": published_at, "last_month": last_month.get(level),
            "release": {k: release.get(k) for k in ("tag", "version", "commit", "engine",
                                                    "engine_override")},
            "published_by": dict(published_by),
        })
    return pointers
