"""The steps a promotion and a hotfix share: merge into production, CHANGELOG commit,
annotated tag, MLflow aliases, back-port into development; plus the staging-report check.

Each step has a ``done`` check on the repository itself, so a re-run after a crash skips
what already happened (see :mod:`ewspipe.release.steps`). The plan (a JSON dict stored in the
ledger) carries everything a step needs: ``tag``, ``candidate``, ``merge_message``,
``changelog`` (the rendered section), ``manifest``, ``models``, ``end_branch``.
"""

from __future__ import annotations

import tomllib
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.aliases import set_aliases
from ewspipe.release.changelog import RELEASE_SUBJECT, has_section, insert_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.steps import Step, tag_step

__all__ = ["GATES", "backport_instructions", "deployed_names", "finish_manifest",
           "integrate_steps", "require_staging"]

GATES = ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff")


def require_staging(ctx: ReleaseContext, candidate: str, production: str | None,
                    allow: list[str], reason: str | None) -> tuple[dict[str, Any],
                                                                    list[dict[str, str]]]:
    """The stored staging report for exactly ``candidate`` and the overrides it needs;
    refuse when there is none, when it compared against another production head, or when a
    gate failed that ``allow`` does not name."""
    for gate in allow:
        if gate not in GATES:
            raise InputError(f"option --allow: {gate!r} is not a gate; use one of "
                             f"{', '.join(GATES)}")
    if allow and not (reason and reason.strip()):
        raise InputError("option --allow needs --reason TEXT: an override is recorded with "
                         "why it was made")
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
    failed = [g for g in report.get("gates") or [] if g.get("status") == "FAIL"]
    blocking = [g for g in failed if g.get("gate") not in allow]
    if blocking:
        lines = [f"  - {g.get('gate')}: {g.get('summary')}" for g in blocking]
        raise CheckFailed(f"refusing to release {candidate[:12]}: its staging report "
                          f"({report.get('report_id')}) failed {len(blocking)} gate"
                          f"{'s' if len(blocking) != 1 else ''}:\n" + "\n".join(lines)
                          + "\nfix the candidate and stage again, or override a gate with "
                          "--allow GATE --reason TEXT (recorded in the release manifest)")
    statuses = {g.get("gate"): g.get("status") for g in report.get("gates") or []}
    overrides = [{"gate": gate, "status": str(statuses.get(gate)), "reason": str(reason)}
                 for gate in allow]
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
        return has_section(git.show(prod, "CHANGELOG.md"), tag)

    def changelog() -> str:
        git.checkout(prod)
        text = insert_section(git.show(prod, "CHANGELOG.md"), plan["changelog"])
        sha = git.commit_file("CHANGELOG.md", text, f"{RELEASE_SUBJECT}{tag}")
        return f"CHANGELOG.md updated ({sha[:12]})"

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
