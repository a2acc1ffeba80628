"""`ewspipe release ...`: the development/production sync (README, Releasing).

Exit codes: 0 done; 1 a gate or check failed, the repository is in the wrong state (dirty,
wrong branch, tags and ledger disagree) or a back-port is pending; 2 bad input (unknown ref,
bad version, bad option).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ewspipe.cli.choices import BumpName
from ewspipe.cli.output import JSON_OPTION, QUIET_OPTION, emit, progress_on_stderr
from ewspipe.errors import InputError
from ewspipe.progress import Reporter
from ewspipe.release.context import ReleaseContext
from ewspipe.release.hotfix import finish_hotfix, start_hotfix
from ewspipe.release.integrate import check_overrides
from ewspipe.release.promote import parse_bump, promote
from ewspipe.release.rollback import rollback
from ewspipe.release.status import check, ledger_log, status
from ewspipe.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Releases: status, staging, promotion, hotfixes, rollback, the ledger.",
                  no_args_is_help=True,
                  rich_markup_mode=None)
hotfix_app = typer.Typer(help="Urgent fixes: branch from the production tag, release as a "
                         "PATCH, back-port into development.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(hotfix_app, name="hotfix")

REPO_OPTION = typer.Option(None, "--repo", help="The product repository (default: the git "
                           "repository holding the settings file).")
ALLOW_OPTION = typer.Option(None, "--allow", metavar="<gate>",
                            help="Release despite this failed gate (repeat "
                            "for several; sync, integrity and inference cannot be "
                            "overridden); needs --reason, recorded in the manifest, the tag "
                            "and CHANGELOG.md.")
CANDIDATE_OPTION = typer.Option(None, "--candidate", help="Branch, tag or commit to stage or "
                                "promote (default: the development branch).")
REASON_OPTION = typer.Option(None, "--reason", help="Why the --allow override is justified.")


def _ctx(ctx: typer.Context, repo: Path | None, *, read_only: bool = False) -> ReleaseContext:
    settings: Settings = ctx.obj
    return ReleaseContext.open(settings, repo, create=not read_only)


def _say(reporter: Reporter) -> Callable[[str], None]:
    """A release step's line, as progress on stderr (never under --quiet)."""
    return lambda line: reporter.note(f"  ... {line}")


def _operation_lines(doc: dict[str, Any]) -> str:
    head = f"{doc['command']}: {doc['tag']}" + (" (resumed)" if doc.get("resumed") else "")
    lines = [head]
    for s in doc["steps"]:
        lines.append(f"  {s['step']:<10} {s['status']}" + (f": {s['note']}" if s["note"]
                                                           else ""))
    man = doc["manifest"]
    lines.append(f"  release commit {man.get('release_commit', '')[:12]}")
    for o in man.get("overrides") or []:
        lines.append(f"  override {o['gate']} ({o['status']}): {o['reason']}")
    backport = man.get("backport") or {}
    if backport.get("status") == "conflict":
        lines.append(f"  BACK-PORT PENDING: conflicts in {', '.join(backport['files'])}; "
                     f"resolve on {backport['branch']} (see `ewspipe release status`)")
    if doc.get("regenerate"):
        lines.append(f"  {doc['regenerate']}")
    return "\n".join(lines)


@app.command("status")
def status_command(ctx: typer.Context, repo: Path | None = REPO_OPTION,
                   as_json: bool = JSON_OPTION) -> None:
    """Production version, development ahead/behind, unreleased changes, hotfixes,
    pending back-ports and the last staging result."""
    doc = status(_ctx(ctx, repo, read_only=True))

    def human() -> str:
        p, d = doc["production"], doc["development"]
        lines = [f"production: {p['tag'] or 'no release'} ({(p['commit'] or '-')[:12]})",
                 f"development: {d['ahead']} ahead, {d['behind']} behind "
                 f"({'contains' if d['contains_production'] else 'LACKS'} production)"]
        lines.append(f"unreleased commits: {len(doc['unreleased'])}")
        lines += [f"  {c['sha'][:7]} {c['subject']}" for c in doc["unreleased"][:20]]
        for kind, names in doc["changed"].items():
            if names:
                lines.append(f"  changed {kind}: {', '.join(names)}")
        lines.append("hotfix branches: " + (", ".join(doc["hotfix_branches"]) or "none"))
        for b in doc["pending_backports"]:
            lines.append(f"pending back-port {b['tag']}: {b['how']}")
        for op in doc["pending_operations"]:
            lines.append(f"PENDING {op['kind']} of {op['version']} (re-run the command)")
        s = doc["last_staging"]
        lines.append("last staging: " + ("none" if s is None else
                     f"{(s['candidate_commit'] or '')[:12]} "
                     f"{'passed' if s['passed'] else 'FAILED ' + ','.join(s['failed_gates'])}"
                     f", {s['age_hours']} h ago"))
        lines += [f"PROBLEM: {p}" for p in doc["problems"]]
        return "\n".join(lines)

    emit(doc, as_json, human)


@app.command("check")
def check_command(ctx: typer.Context, repo: Path | None = REPO_OPTION,
                  as_json: bool = JSON_OPTION) -> None:
    """Exit 1 when development does not contain production (a back-port is pending)."""
    doc = check(_ctx(ctx, repo, read_only=True))
    emit(doc, as_json, lambda: doc["detail"])


@app.command("stage")
def stage_command(
    ctx: typer.Context,
    candidate: str | None = CANDIDATE_OPTION,
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", metavar="<id>",
        help="Snapshot id per level (repeatable; default: the snapshots "
        "of production's last run, else the latest of each level)."),
    skip_tests: str | None = typer.Option(None, "--skip-tests", help="Skip the tests gate; "
                                          "the reason is recorded."),
    validation: bool = typer.Option(False, "--validation", help="Evaluate on the validation "
                                    "partition too."),
    repo: Path | None = REPO_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The staging validation cycle for a candidate, without promoting; the report is stored
    in the ledger. Exit 1 when a gate fails."""
    from ewspipe.release.staging import stage

    if skip_tests is not None and not skip_tests.strip():
        raise InputError("option --skip-tests needs a reason (e.g. --skip-tests 'CI ran them')")
    rctx = _ctx(ctx, repo)
    rctx.require_lineage("stage")  # a candidate is compared with production: the real one
    with progress_on_stderr(quiet) as reporter:
        report = stage(rctx.git.root, ctx.obj, candidate=candidate, snapshot=snapshot,
                       skip_tests_reason=skip_tests, validation=validation,
                       progress=_say(reporter))
    doc = report.to_dict()
    doc["report_id"] = rctx.ledger.record_staging(doc)

    def human() -> str:
        lines = [f"staging {doc['candidate_ref']} ({doc['candidate_commit'][:12]}): "
                 f"{'PASSED' if doc['passed'] else 'FAILED'}"]
        lines += [f"  {g['gate']:<14} {g['status']:<5} {g['summary']}" for g in doc["gates"]]
        lines.append(f"  report: {doc['html_path']}")
        return "\n".join(lines)

    emit(doc, as_json, human)
    if not doc["passed"]:
        raise typer.Exit(1)


@app.command("promote")
def promote_command(
    ctx: typer.Context,
    bump: BumpName | None = typer.Option(None, "--bump", help="major, minor or patch "
                                         "(default: decided from the changes)."),
    candidate: str | None = CANDIDATE_OPTION,
    allow: list[str] | None = ALLOW_OPTION,
    reason: str | None = REASON_OPTION,
    repo: Path | None = REPO_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Merge the staged candidate into production, tag the next version, write the manifest
    and CHANGELOG.md. Re-running completes an interrupted promotion."""
    kind = parse_bump(bump)
    check_overrides(list(allow or []), reason)  # before the ledger is opened (or created)
    with progress_on_stderr(quiet) as reporter:
        doc = promote(_ctx(ctx, repo), candidate=candidate, bump=kind,
                      allow=list(allow or []), reason=reason, progress=_say(reporter))
    emit(doc, as_json, lambda: _operation_lines(doc))


@hotfix_app.command("start")
def hotfix_start_command(ctx: typer.Context, name: str = typer.Argument(..., help="Short "
                         "name: the branch is hotfix/NAME."),
                         repo: Path | None = REPO_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Create and check out hotfix/NAME at the production release tag."""
    doc = start_hotfix(_ctx(ctx, repo), name)
    emit(doc, as_json, lambda: f"on {doc['branch']} (from {doc['from']}); {doc['next']}")


@hotfix_app.command("finish")
def hotfix_finish_command(
    ctx: typer.Context,
    skip_tests: str | None = typer.Option(None, "--skip-tests", help="Skip the tests gate "
                                          "while staging; the reason is recorded."),
    allow: list[str] | None = ALLOW_OPTION,
    reason: str | None = REASON_OPTION,
    repo: Path | None = REPO_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Stage the checked-out hotfix, release it (a PATCH version unless it changes a deployed
    model) and back-port it into development. Re-running completes an interrupted hotfix."""
    check_overrides(list(allow or []), reason)  # before the ledger is opened (or created)
    rctx = _ctx(ctx, repo)
    with progress_on_stderr(quiet) as reporter:

        def stager(commit: str) -> dict[str, Any]:
            from ewspipe.release.staging import stage

            report = stage(rctx.git.root, ctx.obj, candidate=commit,
                           skip_tests_reason=skip_tests, progress=_say(reporter))
            return report.to_dict()

        doc = finish_hotfix(rctx, stager=stager, allow=list(allow or []), reason=reason,
                            progress=_say(reporter))
    emit(doc, as_json, lambda: _operation_lines(doc))


@app.command("rollback")
def rollback_command(ctx: typer.Context,
                     version: str | None = typer.Argument(None, help="Release to restore "
                                                          "(default: the previous one)."),
                     repo: Path | None = REPO_OPTION, quiet: bool = QUIET_OPTION,
                     as_json: bool = JSON_OPTION) -> None:
    """Restore an earlier release's tree as a new PATCH release (history kept) and move
    the published forecasts back to it."""
    with progress_on_stderr(quiet) as reporter:
        doc = rollback(_ctx(ctx, repo), version, progress=_say(reporter))
    emit(doc, as_json, lambda: _operation_lines(doc))


@app.command("log")
def log_command(ctx: typer.Context, repo: Path | None = REPO_OPTION,
                as_json: bool = JSON_OPTION) -> None:
    """The release ledger, newest first."""
    entries = ledger_log(_ctx(ctx, repo, read_only=True))
    doc = {"releases": entries}

    def human() -> str:
        if not entries:
            return "no releases yet"
        lines = []
        for e in entries:
            man = e["manifest"] or {}
            extra = (f" ({man.get('rollback_of')} -> {man.get('rollback_to')})"
                     if e["kind"] == "rollback" else "")
            lines.append(f"{e['version']:<10} {e['kind']:<9} {e['status']:<9} "
                         f"{e['created_at']} {man.get('operator', '')}{extra}")
            for o in man.get("overrides") or []:
                lines.append(f"    override {o['gate']}: {o['reason']}")
            aliases = man.get("aliases")
            if isinstance(aliases, dict) and aliases:  # MLflow versions production runs
                lines.append("    production alias: " + ", ".join(
                    f"{n} v{v}" for n, v in sorted(aliases.items())))
        return "\n".join(lines)

    emit(json.loads(json.dumps(doc, default=str)), as_json, human)
