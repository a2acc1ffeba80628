"""The staging gates that look at the candidate itself: sync, integrity, tests, drift.

Each gate returns a :class:`GateResult` (PASS / WARN / FAIL / SKIP) whose evidence says what
was checked and what was found; none raises for a finding. The gates that compare run outputs
(inference, performance, forecast diff) are in :mod:`ewspipe.release.gates_outputs`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ewspipe.alerts.records import Severity
from ewspipe.drift.check import DriftConfig, check_panel
from ewspipe.errors import InputError
from ewspipe.panel.schema import Panel
from ewspipe.release.git import Git
from ewspipe.release.sides import Side
from ewspipe.release.staging_report import GateResult
from ewspipe.settings import ReleaseSettings, Settings

__all__ = ["catalog_items", "drift_gate", "integrity_gate", "lock_check", "sync_gate",
           "tests_gate"]

_TAIL = 40


def _tail(text: str, lines: int = _TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- 1. sync


def _summaries(git: Git, base: str, head: str) -> list[str]:
    """One line per commit in ``head`` but not in ``base``, newest first."""
    return [f"{c.short} {c.subject}" for c in git.commits(f"{base}..{head}", merges=True)]


def sync_gate(repo: Path, candidate: str, production: str | None, *,
              production_branch: str) -> GateResult:
    """The candidate contains production's head (``git merge-base --is-ancestor``)."""
    if production is None:
        return GateResult("sync", "WARN", f"no branch {production_branch!r} yet: nothing to "
                          "contain (first release)", {"production_branch": production_branch})
    evidence: dict[str, Any] = {"production_commit": production, "candidate_commit": candidate,
                                "production_branch": production_branch}
    git = Git(repo)
    if git.is_ancestor(production, candidate):
        ahead = _summaries(git, production, candidate)
        evidence["commits_ahead"] = ahead[:50]
        return GateResult("sync", "PASS", f"the candidate contains production "
                          f"({production[:12]}) and is {len(ahead)} commit(s) ahead", evidence)
    missing = _summaries(git, candidate, production)
    evidence["missing_production_commits"] = missing[:50]
    return GateResult(
        "sync", "FAIL",
        f"the candidate lacks {len(missing)} production commit(s) (e.g. an unported hotfix); "
        f"merge {production_branch} into the candidate first", evidence)


# --------------------------------------------------------------------------- 2. integrity


def catalog_items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Models and ensembles of a ``models list --json`` document, each with its ``kind``."""
    return ([{**m, "kind": "model"} for m in listing.get("models", [])]
            + [{**e, "kind": "ensemble"} for e in listing.get("ensembles", [])])


def lock_check(repo: Path, candidate: str,
                production: str | None) -> tuple[str, str, dict[str, Any]]:
    """requirements.lock vs pyproject.toml: every declared dependency pinned, and the lock
    changed whenever the declared dependencies did."""
    git = Git(repo)
    pyproject = git.show(candidate, "pyproject.toml")
    if pyproject is None:
        return "PASS", "no pyproject.toml: the product runs the installed ewspipe", {
            "applies": False}
    try:
        project = tomllib.loads(pyproject).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        return "FAIL", f"pyproject.toml is not valid TOML ({exc})", {"applies": True}
    lock = git.show(candidate, "requirements.lock")
    if lock is None:
        return "FAIL", "pyproject.toml declares dependencies but requirements.lock is missing", {
            "applies": True}
    pins = {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", lock, re.M)}
    from packaging.requirements import InvalidRequirement, Requirement

    problems: list[str] = []
    for raw in project.get("dependencies", []):
        try:
            req = Requirement(raw)
        except InvalidRequirement as exc:
            problems.append(f"pyproject dependency {raw!r} is invalid ({exc})")
            continue
        name = req.name.lower().replace("_", "-")
        if name not in pins:
            problems.append(f"{req.name} is declared in pyproject.toml but not pinned in "
                            "requirements.lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} in requirements.lock does not satisfy "
                            f"{req.specifier} from pyproject.toml")
    evidence: dict[str, Any] = {"applies": True, "pinned": len(pins),
                                "declared": len(project.get("dependencies", []))}
    if production is not None:
        same_lock = git.blob(candidate, "requirements.lock") == git.blob(
            production, "requirements.lock")
        old = git.show(production, "pyproject.toml")
        old_deps = tomllib.loads(old).get("project", {}).get("dependencies") if old else None
        evidence["lock_unchanged"] = same_lock
        if same_lock and old_deps is not None and old_deps != project.get("dependencies"):
            problems.append("pyproject.toml dependencies changed since production but "
                            "requirements.lock did not; regenerate the lock")
    evidence["problems"] = problems
    if problems:
        return "FAIL", "; ".join(problems[:3]), evidence
    return "PASS", f"requirements.lock pins all {evidence['declared']} declared dependencies", \
        evidence


def _ensemble_consistency(items: list[dict[str, Any]]) -> list[str]:
    """Members exist and share their ensemble's level and target (partitions are global)."""
    by_name = {i["name"]: i for i in items}
    problems = []
    for ens in (i for i in items if i["kind"] == "ensemble"):
        for member in ens.get("members", []):
            m = by_name.get(member)
            if m is None:
                problems.append(f"ensemble {ens['name']}: member {member!r} is not defined")
            elif (m["level"], m["target"]) != (ens["level"], ens["target"]):
                problems.append(f"ensemble {ens['name']} ({ens['level']}, {ens['target']}): "
                                f"member {member} is {m['level']}, {m['target']}")
    return problems


def integrity_gate(repo: Path, side: Side, production: str | None, *,
                   timeout: float) -> tuple[GateResult, list[dict[str, Any]]]:
    """``ewspipe models check`` and ``models list`` with the candidate's own code, status
    rules, ensemble consistency, settings and lock file. Returns the catalog items too."""
    evidence: dict[str, Any] = {}
    problems: list[str] = []
    check = side.ewspipe("models", "check", timeout=timeout)
    if check.doc is None or "files_checked" not in check.doc:
        problems.append(f"`ewspipe models check` did not run: {check.error()}")
    else:
        evidence["models_check"] = {k: check.doc.get(k) for k in (
            "ok", "files_checked", "files_invalid", "ensemble_files_checked",
            "ensemble_files_invalid", "problem_count", "notes")}
        found = [p for f in [*check.doc.get("files", []), *check.doc.get("ensembles", [])]
                 for p in f.get("problems", [])]
        evidence["models_check"]["problems"] = found[:50]
        problems += [f"{p.get('file')}: {p.get('key') or ''} {p.get('message')}".strip()
                     for p in found]
    items: list[dict[str, Any]] = []
    if not problems:
        listing = side.ewspipe("models", "list", timeout=timeout)
        if listing.returncode != 0 or listing.doc is None:
            problems.append(f"`ewspipe models list` failed: {listing.error()}")
        else:
            items = catalog_items(listing.doc)
            publishable = [i["name"] for i in items if i["status"] == "deployed"]
            evidence["items"] = [{k: i.get(k) for k in ("name", "kind", "level", "status")}
                                 for i in items]
            if not publishable:
                problems.append("no deployed model or ensemble: production would publish "
                                "nothing")
            problems += _ensemble_consistency(items)
    own_toml = Git(repo).show(side.commit, "ewspipe.toml")
    if own_toml is not None:
        try:
            Settings.model_validate(tomllib.loads(own_toml))
        except Exception as exc:  # TOML or pydantic errors: either makes the file unusable
            problems.append(f"the candidate's ewspipe.toml is invalid: {str(exc)[:300]}")
    lock_status, lock_summary, lock_evidence = lock_check(repo, side.commit, production)
    evidence["lock"] = {"status": lock_status, "summary": lock_summary, **lock_evidence}
    if lock_status == "FAIL":
        problems.append(f"lock file: {lock_summary}")
    evidence["problems"] = problems
    evidence["partitions"] = ("global: [partitions] of production's ewspipe.toml applies to "
                              "every model; members share their ensemble's level and target")
    if problems:
        return GateResult("integrity", "FAIL", f"{len(problems)} problem(s): {problems[0]}",
                          evidence), items
    n_models = sum(i["kind"] == "model" for i in items)
    return GateResult("integrity", "PASS", f"{n_models} models and {len(items) - n_models} "
                      f"ensembles valid; status rules hold; {lock_summary}", evidence), items


# --------------------------------------------------------------------------- 3. tests


def tests_gate(side: Side, release: ReleaseSettings, skip_reason: str | None) -> GateResult:
    """The candidate's own test suite (``[release] test_command`` in its tree)."""
    if skip_reason is not None:
        if not skip_reason.strip():
            raise InputError("skip_tests_reason is empty; say why the tests are skipped")
        return GateResult("tests", "SKIP", f"skipped: {skip_reason}", {"reason": skip_reason})
    if not (side.tree / "tests").is_dir():
        return GateResult("tests", "SKIP", "the candidate has no tests/ folder",
                          {"reason": "no tests/ folder in the candidate"})
    import sys

    command = list(release.test_command)
    if command[0] == "python":
        command[0] = sys.executable
    done = side.run_command(command, timeout=release.test_timeout_seconds)
    shown = ["python", *command[1:]] if command[0] == sys.executable else command
    evidence = {"command": " ".join(shown), "exit_code": done.returncode,
                "output_tail": _tail(done.stderr)}
    if done.returncode == 0:
        last = _tail(done.stderr, 1)
        return GateResult("tests", "PASS", f"the test suite passed ({last})", evidence)
    return GateResult("tests", "FAIL", f"the test suite failed (exit {done.returncode}): "
                      f"{_tail(done.stderr, 1)}", evidence)


# --------------------------------------------------------------------------- 5. drift


def drift_gate(settings: Settings, panels: Mapping[str, tuple[str, Panel]], *,
               fail_severity: str, snapshot_note: str | None = None) -> GateResult:
    """Input drift of each snapshot's last month with production's drift settings: alerts at
    or above ``fail_severity`` FAIL, alerts below it WARN. ``snapshot_note`` (how the
    snapshot was chosen, when that deserves a warning) turns a PASS into a WARN."""
    limit = Severity(fail_severity)
    evidence: dict[str, Any] = {"fail_severity": limit.value, "levels": {}}
    worst = "PASS"
    notes: list[str] = []
    for level, (snapshot_id, panel) in sorted(panels.items()):
        config = DriftConfig.from_settings(settings.drift, "forecasting", level)
        try:
            report = check_panel(panel, config, snapshot=snapshot_id)
        except InputError as exc:
            evidence["levels"][level] = {"snapshot": snapshot_id, "skipped": str(exc)}
            notes.append(f"{level}: not checked ({exc})")
            worst = "WARN" if worst == "PASS" else worst
            continue
        alerts = report.alerts()
        failing = [a for a in alerts if a.severity.rank >= limit.rank]
        evidence["levels"][level] = {
            "snapshot": snapshot_id, "alarms": len(report.alarms),
            "max_severity": report.max_severity, "by_detector": report.counts(),
            "alerts_at_or_above": len(failing),
            "top": [{"severity": a.severity.value, "source": a.source, "offender": a.offender,
                     "value": a.value, "threshold": a.threshold, "message": a.message}
                    for a in sorted(alerts, key=lambda a: -a.severity.rank)[:20]],
        }
        if failing:
            worst = "FAIL"
            notes.append(f"{level}: {len(failing)} alert(s) at or above {limit.value} "
                         f"(e.g. {failing[0].message})")
        elif alerts:
            worst = "WARN" if worst == "PASS" else worst
            notes.append(f"{level}: {len(alerts)} alert(s) below {limit.value}")
    if snapshot_note:
        evidence["snapshot_note"] = snapshot_note
        notes.append(snapshot_note)
        worst = "WARN" if worst == "PASS" else worst
    summary = "; ".join(notes) if notes else "no drift alarm on " + ", ".join(
        f"{lvl} {sid}" for lvl, (sid, _) in sorted(panels.items()))
    return GateResult("drift", worst, summary, evidence)
