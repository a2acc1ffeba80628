"""The publish guard: only a clean production release may publish.

Before ``ewspipe run --env production`` (any ``[run] publish_environments``) runs, and again
inside its publish task, the workspace repository (the git repository holding the settings
file, or the current folder with built-in settings) must have

* HEAD exactly at a release tag (``[release] tag_prefix`` + MAJOR.MINOR.PATCH),
* HEAD equal to the head of the production branch (``[release] production_branch``),
* no uncommitted changes to tracked files,
* a *completed* entry for that version in the release ledger (state database of the
  production environment).

Otherwise :class:`ReleaseGuardFailed` (exit 1) says which condition failed and how to get a
release; nothing is published. There is deliberately no setting to turn this off. (Git is
called through ewspipe.provenance here: the release layer sits above flows.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ewspipe.errors import CheckFailed
from ewspipe.provenance import git_output
from ewspipe.settings import Settings
from ewspipe.store.statedb import open_state_db

__all__ = ["ReleaseGuardFailed", "check_release"]

_HOW = ("only a clean production release may publish: check out the production release "
        "(`git checkout {prod}`), or make one with `ewspipe release stage` and `ewspipe release "
        "promote` (README, Releasing)")


class ReleaseGuardFailed(CheckFailed):
    """The workspace is not a clean, recorded production release: do not publish."""


def check_release(settings: Settings) -> dict[str, Any]:
    """The release the workspace is at (``tag``, ``version``, ``commit``, ``repo``), or
    :class:`ReleaseGuardFailed` naming what is wrong."""
    rel = settings.release
    how = _HOW.format(prod=rel.production_branch)
    where = (Path(settings.source_file).resolve().parent if settings.source_file is not None
             else Path.cwd())
    top = git_output(where, "rev-parse", "--show-toplevel")
    if not top:
        raise ReleaseGuardFailed(f"refusing to publish: the workspace {where} is not a git "
                                 f"repository; {how}")
    repo = Path(top)
    head = git_output(repo, "rev-parse", "--verify", "HEAD")
    prod = git_output(repo, "rev-parse", "--verify", f"refs/heads/{rel.production_branch}")
    if head is None or prod is None or head != prod:
        shown = head[:12] if head else "no commit"
        raise ReleaseGuardFailed(f"refusing to publish: HEAD ({shown}) of {repo} is not the "
                                 f"head of the {rel.production_branch} branch; {how}")
    pattern = re.compile(re.escape(rel.tag_prefix) + r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
    tags = [t for t in (git_output(repo, "tag", "--points-at", head) or "").splitlines()
            if pattern.match(t)]
    if not tags:
        raise ReleaseGuardFailed(f"refusing to publish: HEAD ({head[:12]}) of {repo} is not at "
                                 f"a release tag ({rel.tag_prefix}MAJOR.MINOR.PATCH); {how}")
    dirty = git_output(repo, "status", "--porcelain", "--untracked-files=no")
    if dirty is None or dirty:
        files = ", ".join(line[3:] for line in (dirty or "").splitlines()[:5])
        raise ReleaseGuardFailed(f"refusing to publish: {repo} has uncommitted changes "
                                 f"({files or 'git status failed'}); a published forecast "
                                 "must come from exactly the released code: commit or stash "
                                 "them, or restore the release")
    db = open_state_db(settings.run.state_url, settings.state_dir / "production")
    completed = {e["version"] for e in db.releases() if e["status"] == "completed"}
    for tag in sorted(tags):
        version = tag[len(rel.tag_prefix):]
        if version in completed:
            return {"tag": tag, "version": version, "commit": head, "repo": str(repo)}
    raise ReleaseGuardFailed(f"refusing to publish: {', '.join(tags)} has no completed entry "
                             "in the release ledger (a tag made by hand, or a release that "
                             "did not finish: re-run the release command or see `ewspipe "
                             "release status`)")
