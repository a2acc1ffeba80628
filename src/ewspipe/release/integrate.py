"""The steps a promotion and a hotfix share: merge into production, CHANGELOG commit,
annotated tag, MLflow aliases, back-port into development; plus the staging-report check.

Each step has a ``done`` check on the repository itself, so a re-run after a crash skips
what already happened (see :mod:`ewspipe.release.steps`). The plan (a JSON dict stored in the
ledger) carries everything a step needs: ``tag``, ``candidate``, ``merge_message``,
``changelog`` (the rendered section), ``manifest``, ``models``, ``end_branch``.

What a promotion may release (issue 16): a stored staging report for the exact candidate
whose inference gate passed (PASS or WARN), no failed gate other than those overridden with a
reason, and sync, integrity and inference never overridden (production must be able to run
what is released, and it must be the tree that was staged); the tree the merge into production
produces must equal the candidate's staged tree.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.aliases import set_aliases
from ewspipe.release.changelog import CHANGELOG, RELEASE_SUBJECT, has_section, insert_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.manifest import operator, release_engine
from ewspipe.release.steps import Operation, Step, resume_or_run, tag_step

__all__ = ["GATES", "NOT_OVERRIDABLE", "backport_instructions", "check_overrides",
           "deployed_names", "finish_manifest", "integrate", "integrate_steps", "require_staged",
           "require_staged_tree", "require_staging"]

GATES = ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff")

_RUNNABLE = ("production must be able to run what is released, and a candidate that fails it "
             "would make `ewspipe run --env production` fail")
#: Gates no ``--allow`` can override, and why.
NOT_OVERRIDABLE = {
    "sync": "the merged tree would not be the tree that was staged (production has commits "
            "the candidate lacks): merge production into the candidate and stage again",
    "integrity": f"{_RUNNABLE} (invalid model, ensemble, settings or lock file): fix the "
                 "candidate and stage again",
    "inference": f"{_RUNNABLE} (no valid forecasts were produced): fix the candidate and "
                 "stage again",
}
_RUNS = ("PASS", "WARN")  # the inference results that show the candidate runs


def check_overrides(allow: list[str], reason: str | None) -> None:
    """Refuse (bad input) an ``--allow`` that names no gate or a gate that cannot be
    overridden, or that comes without a reason."""
    for gate in allow:
        if gate not in GATES:
            raise InputError(f"{gate!r} is not a gate; use one of "
                             f"{', '.join(g for g in GATES if g not in NOT_OVERRIDABLE)}",
                             parameter="allow")
        if gate in NOT_OVERRIDABLE:
            raise InputError(f"the {gate} gate cannot be overridden: {NOT_OVERRIDABLE[gate]}",
                             parameter="allow")
    if allow and not (reason and reason.strip()):
        raise InputError("an override needs a reason: it is recorded with why it was made",
                         parameter="reason")


def require_staged_tree(ctx: ReleaseContext, candidate: str, production: str | None) -> None:
    """Refuse unless merging ``candidate`` into ``production`` (computed in memory, nothing
    changes) gives exactly the candidate's tree, the one staging ran: the release is then
    provably the tree that was validated (its CHANGELOG commit aside)."""
    git = ctx.git
    staged = git.tree(candidate)
    merged = git.merge_tree(production, candidate) if production is not None else staged
    if merged != staged:
        what = ("conflicts" if merged is None else
                f"gives tree {merged[:12]}, not the staged tree {staged[:12]}")
        raise CheckFailed(f"refusing to release {candidate[:12]}: merging it into {ctx.prod} "
                          f"({production[:12] if production else '-'}) {what}, so the release "
                          "would not be the tree that was staged; merge "
                          f"{ctx.prod} into the candidate, stage it and promote again")


def require_staging(ctx: ReleaseContext, candidate: str, production: str | None,
                    allow: list[str], reason: str | None) -> tuple[dict[str, Any],
                                                                    list[dict[str, str]]]:
    """The stored staging report for exactly ``candidate`` and the overrides it needs;
    refuse when there is none, when it compared against another production head, when a gate
    failed that ``allow`` does not name, or when its inference gate did not PASS or WARN."""
    check_overrides(allow, reason)
    report = ctx.ledger.staging_for(candidate)
    if report is None:
        raise CheckFailed(f"refusing to release {candidate[:12]}: no staging report for this "
                          "exact commit; run `ewspipe release stage --candidate "
                          f"{candidate[:12]}` first")
    staged_against = report.get("production_commit")
    if production is not None and staged_against and staged_against != production:
        raise CheckFailed(f"refusing to release {candidate[:12]}: its staging report compared "
                          f"it with production {staged_against[:12]}, but production is now "
                          f"{production[:12]}; stage it again")
    gates = list(report.get("gates") or [])
    failed = [g for g in gates if g.get("status") == "FAIL"]
    blocking = [g for g in failed if g.get("gate") not in allow]
    if blocking:
        lines = [f"  - {g.get('gate')}: {g.get('summary')}" for g in blocking]
        hint = "\nfix the candidate and stage again"
        if any(g.get("gate") not in NOT_OVERRIDABLE for g in blocking):
            hint += (", or override a gate with --allow GATE --reason TEXT (recorded in the "
                     "release manifest, the tag and CHANGELOG.md; "
                     f"{', '.join(NOT_OVERRIDABLE)} cannot be overridden)")
        raise CheckFailed(f"refusing to release {candidate[:12]}: its staging report "
                          f"({report.get('report_id')}) failed {len(blocking)} gate"
                          f"{'s' if len(blocking) != 1 else ''}:\n" + "\n".join(lines) + hint)
    statuses = {g.get("gate"): g.get("status") for g in gates}
    inference = statuses.get("inference")
    if inference not in _RUNS:
        summary = next((g.get("summary") for g in gates if g.get("gate") == "inference"), None)
        raise CheckFailed(f"refusing to release {candidate[:12]}: the inference gate of its "
                          f"staging report ({report.get('report_id')}) is "
                          f"{inference or 'missing'}" + (f" ({summary})" if summary else "")
                          + ", not PASS or WARN: production must be able to run what is "
                          "released, so only a candidate seen to forecast can be released "
                          "(no --allow overrides this); stage it again with the inference "
                          "gate run")
    validated = report.get("engine")
    if isinstance(validated, dict) and validated.get("fingerprint"):
        now = release_engine(ctx.git, candidate)
        changed = [what for what, key in (("source", "fingerprint"),
                                          ("dependencies", "dependencies"))
                   if now.get(key) != validated.get(key)]
        if changed:
            raise CheckFailed(
                f"refusing to release {candidate[:12]}: the engine changed since it was staged "
                f"(ewspipe {validated.get('ewspipe')} -> {now.get('ewspipe')}; "
                f"{' and '.join(changed)} differ), so the release would not record the engine "
                "that validated it; stage it again with this engine (`ewspipe release stage "
                f"--candidate {candidate[:12]}`)")
    who = operator(ctx.git)
    overrides = [{"gate": gate, "status": str(statuses.get(gate)), "reason": str(reason),
                  "operator": who} for gate in allow]
    return report, overrides


def require_staged(ctx: ReleaseContext, candidate: str, production: str | None,
                   allow: list[str], reason: str | None) -> tuple[dict[str, Any],
                                                                   list[dict[str, str]]]:
    """:func:`require_staging` then :func:`require_staged_tree`: the checks every release
    (promotion or hotfix) passes before it is planned. Returns the report and overrides."""
    report, overrides = require_staging(ctx, candidate, production, allow, reason)
    require_staged_tree(ctx, candidate, production)
    return report, overrides


def deployed_names(ctx: ReleaseContext, commit: str) -> list[str]:
    """Deployed models and ensembles at ``commit`` (what the release puts in front of users)."""
    names = []
    for folder in ("models", "ensembles"):
        for path in ctx.git.ls_tree(commit, folder):
            if not path.endswith(".toml"):
                continue
            try:
                data = tomllib.loads(ctx.git.show(commit, path) or "")
            except tomllib.TOMLDecodeError:
                continue
            if data.get("status") == "deployed":
                names.append(str(data.get("name") or path.rsplit("/", 1)[-1][:-5]))
    return sorted(names)


def backport_instructions(ctx: ReleaseContext, tag: str, files: list[str]) -> str:
    branch = f"backport/{tag}"
    return (f"back-port of {tag} into {ctx.dev} conflicts in {', '.join(files)}; "
            f"{ctx.dev} was left untouched. Branch {branch} points at the release. Resolve: "
            f"`git checkout {branch} && git merge {ctx.dev}`, fix {', '.join(files)}, commit, "
            f"then merge {branch} into {ctx.dev} (`git checkout {ctx.dev} && git merge "
            f"{branch}`). `ewspipe release check` fails until {ctx.dev} contains {tag}.")


def integrate_steps(ctx: ReleaseContext, plan: dict[str, Any]) -> list[Step]:
    git, tag, prod, dev = ctx.git, plan["tag"], ctx.prod, ctx.dev
    candidate = plan["candidate"]
    notes: dict[str, Any] = plan.setdefault("_notes", {})

    def merged() -> bool:
        return git.branch_exists(prod) and git.is_ancestor(candidate, prod)

    def merge() -> str:
        if not git.branch_exists(prod):
            git.create_branch(prod, candidate)
            return f"created {prod} at {candidate[:12]} (first release)"
        git.checkout(prod)
        git.merge(candidate, plan["merge_message"], no_ff=True)
        return f"merged {candidate[:12]} into {prod}"

    def changelog_done() -> bool:
        return has_section(git.show(prod, CHANGELOG), tag)

    def changelog() -> str:
        # append-only: the section goes into production's own history, not the candidate's
        # copy (which may lack a rollback's section after `git merge -s ours`)
        git.checkout(prod)
        before = plan.get("production_before")
        history = git.show(before, CHANGELOG) if before else None
        text = insert_section(history if history is not None else git.show(prod, CHANGELOG),
                              plan["changelog"])
        sha = git.commit_file(CHANGELOG, text, f"{RELEASE_SUBJECT}{tag}")
        return f"{CHANGELOG} updated ({sha[:12]})"

    def aliases() -> str:
        found = set_aliases(ctx.settings, plan["manifest"], tag, git=git, commit=candidate)
        notes["aliases"], notes["alias_notes"] = found.aliases, found.notes
        return "; ".join(found.notes)

    def backported() -> bool:
        return (not git.branch_exists(dev) or git.is_ancestor(tag, dev)
                or git.branch_exists(f"backport/{tag}"))

    def backport() -> str:
        files = git.conflicts(dev, tag)
        if files:
            git.create_branch(f"backport/{tag}", tag)
            notes["backport"] = {"status": "conflict", "files": files,
                                 "branch": f"backport/{tag}"}
            return backport_instructions(ctx, tag, files)
        git.checkout(dev)
        git.merge(tag, f"Merge {tag} into {dev}", no_ff=False)
        notes["backport"] = {"status": "merged"}
        return f"{tag} merged into {dev}"

    return [Step("merge", merged, merge), Step("changelog", changelog_done, changelog),
            tag_step(ctx, tag, plan["manifest"]), Step("aliases", lambda: False, aliases),
            Step("backport", backported, backport)]


def finish_manifest(ctx: ReleaseContext, plan: dict[str, Any]) -> dict[str, Any]:
    """Back on the branch the command started from; the manifest with the release commit,
    the back-port outcome and the MLflow alias map (``aliases``: name -> the registered
    version production runs; ``alias_notes``: what was done for each)."""
    git, tag = ctx.git, plan["tag"]
    end = plan["end_branch"]
    git.checkout(end if git.branch_exists(end) else ctx.prod)
    notes = plan.get("_notes", {})
    backport = notes.get("backport")
    if backport is None:
        if git.branch_exists(ctx.dev) and not git.is_ancestor(tag, ctx.dev):
            files = git.conflicts(ctx.dev, tag)
            backport = {"status": "conflict", "files": files, "branch": f"backport/{tag}"}
        else:
            backport = {"status": "merged"}
    return {**plan["manifest"], "release_commit": git.resolve(tag), "backport": backport,
            "aliases": notes.get("aliases", {}), "alias_notes": notes.get("alias_notes", [])}


def integrate(ctx: ReleaseContext, kind: str, doing: str, plan: Callable[[], Operation], *,
              allow: list[str] | None, reason: str | None,
              progress: Callable[[str], None] | None) -> dict[str, Any]:
    """What ``promote`` and ``hotfix finish`` share: check the overrides, resume the pending
    ``kind`` operation or start the one ``plan()`` makes, and run its integration steps.
    Returns the version, tag, whether it resumed and the steps' result."""
    check_overrides(list(allow or []), reason)
    op, resumed, result = resume_or_run(ctx, kind, doing, plan,
                                        lambda p: integrate_steps(ctx, p),
                                        lambda p: finish_manifest(ctx, p), progress)
    return {"version": op.version, "tag": op.plan["tag"], "resumed": resumed, **result}
