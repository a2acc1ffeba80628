"""The release guard: only a clean production release may publish, and a production run
runs exactly what that release validated.

:func:`check_release`: the workspace repository (the git repository holding the settings
file, or the current folder with built-in settings) must have

* HEAD exactly at a release tag (``[release] tag_prefix`` + MAJOR.MINOR.PATCH),
* HEAD equal to the head of the production branch (``[release] production_branch``),
* that branch descending from the last release (:func:`lineage_problems`: a production branch
  reset or rewritten to older code, or a moved release tag, is refused),
* no uncommitted changes to tracked files,
* the settings file and the model and ensemble folders inside the repository, and no
  untracked or git-ignored model, ensemble or settings file there (the loader would read it),
* a *completed* entry for that version in the release ledger (state database of the
  production environment); its manifest is returned.

:func:`verify_workspace` then compares what is about to run with that manifest, before any
training: the model and ensemble set (names, kinds, levels, targets, statuses, config
hashes), the settings file (sha256) and the engine (ewspipe source fingerprint). Anything
extra, missing or changed refuses and names the difference; an engine change is allowed only
with an explicit reason, which is recorded on the run and on every pointer it publishes.

Failures raise :class:`ReleaseGuardFailed` (exit 1). There is deliberately no setting to turn
this off. (Git is called through ewspipe.provenance here: the release layer sits above flows.)
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ewspipe.catalog import Catalog
from ewspipe.catalog.record import catalog_differences, describe_catalog
from ewspipe.errors import CheckFailed, StoreError
from ewspipe.provenance import engine_info, git_output
from ewspipe.settings import Settings
from ewspipe.store.statedb import open_state_db_for_reading

__all__ = [
    "LedgerDamaged",
    "ReleaseGuardFailed",
    "catalog_sha256",
    "check_release",
    "engine_differences",
    "lineage_problems",
    "production_environment",
    "reading_ledger",
    "verify_workspace",
]

_HOW = ("only a clean production release may publish: check out the production release "
        "(`git checkout {prod}`), or make one with `ewspipe release stage` and `ewspipe release "
        "promote` (README, Releasing)")


class ReleaseGuardFailed(CheckFailed):
    """The workspace is not a clean, recorded production release: do not publish."""


class LedgerDamaged(StoreError):
    """The release ledger's database cannot be read (not a database, or a row that is not
    JSON): refuse, naming the file; never guess what it said."""

    exit_code = 2


@contextmanager
def reading_ledger(where: Callable[[], str]) -> Iterator[None]:
    """Turn an unreadable ledger into :class:`LedgerDamaged` naming ``where()`` (the file)."""
    try:
        yield
    except (sqlite3.DatabaseError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LedgerDamaged(
            f"the release ledger in {where()} (table release_ledger) is damaged ({exc}); "
            "restore that file from a backup of the production state: nothing that depends "
            "on the releases it records can be trusted until then") from None


def production_environment(settings: Settings) -> str:
    """The environment whose state database holds the release ledger: the first publishing
    environment (``production`` by default)."""
    return settings.run.production_environment


def _inside(path: Path, repo: Path) -> bool:
    try:
        path.resolve().relative_to(repo.resolve())
    except ValueError:
        return False
    return True


def _stray_files(settings: Settings, repo: Path, how: str) -> None:
    """Refuse files the run would read that are not exactly the committed release: the
    settings file and model/ensemble folders outside the repository, and untracked or ignored
    ``*.toml`` files in those folders (the loader reads every one)."""
    folders = {"models": settings.models_dir, "ensembles": settings.ensembles_dir}
    for what, folder in folders.items():
        if not _inside(folder, repo):
            raise ReleaseGuardFailed(
                f"refusing to publish: the {what} folder {folder} is outside the release "
                f"repository {repo}; production runs only the committed {what} of the "
                f"release ([workspace] {what}_dir must point inside it); {how}")
    if settings.source_file is not None:
        cfg = Path(settings.source_file).resolve()
        if not _inside(cfg, repo):
            raise ReleaseGuardFailed(f"refusing to publish: the settings file {cfg} is outside"
                                     f" the release repository {repo}; {how}")
        rel = cfg.relative_to(repo.resolve()).as_posix()
        if git_output(repo, "ls-files", "--error-unmatch", "--", rel) is None:
            raise ReleaseGuardFailed(f"refusing to publish: the settings file {rel} is not "
                                     f"committed in {repo}; production runs with the "
                                     f"release's own settings; {how}")
    stray: list[str] = []
    for folder in folders.values():
        rel = folder.resolve().relative_to(repo.resolve()).as_posix()
        out = git_output(repo, "ls-files", "--others", "-z", "--", rel) or ""
        ignored = git_output(repo, "ls-files", "--others", "--ignored", "--exclude-standard",
                             "-z", "--", rel) or ""
        for name in (out + "\0" + ignored).split("\0"):
            if name and name.endswith(".toml") and not Path(name).name.startswith("."):
                stray.append(name)
    if stray:
        listed = ", ".join(sorted(set(stray))[:10])
        raise ReleaseGuardFailed(
            f"refusing to publish: {listed} {'is' if len(set(stray)) == 1 else 'are'} not "
            f"part of the release (untracked or git-ignored, yet the run would load "
            f"{'it' if len(set(stray)) == 1 else 'them'}); remove or move the file, or commit "
            "it on development and release it (`ewspipe release stage` / `promote`)")


def _release_tags(repo: Path, prefix: str) -> dict[str, str]:
    """Every ``<prefix>MAJOR.MINOR.PATCH`` tag -> the commit it names (annotated tags peeled),
    from one ``git for-each-ref``."""
    pattern = re.compile(re.escape(prefix) + r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
    out = git_output(repo, "for-each-ref", "--format=%(refname:short) %(objectname) "
                     "%(*objectname)", "refs/tags") or ""
    found = {}
    for line in out.splitlines():
        name, obj, *peeled = line.split(" ")
        if pattern.match(name):
            found[name] = (peeled[0] if peeled and peeled[0] else obj)
    return found


def _version_key(tag: str, prefix: str) -> tuple[int, ...]:
    return tuple(int(p) for p in tag[len(prefix):].split("."))


def lineage_problems(repo: Path, *, production_branch: str, tag_prefix: str,
                     releases: list[dict[str, Any]]) -> list[str]:
    """Why the production branch is not the continuation of the last release, each with
    its fix (empty: it is, or nothing was released yet).

    Releases only ever add commits on top of production (a rollback too), so its head must
    descend from the last completed release: from that release's tag and from the release
    commit the ledger (``releases``, newest first) records for it; and a completed release's
    tag must still name that commit. Anything else is a production branch that was reset or
    rewritten (``git branch -f``), or a tag that was moved, and production would run code no
    release validated."""
    branch = production_branch
    prod = git_output(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    completed = [e for e in releases if e.get("status") == "completed"]
    if not prod or not completed:
        return []
    tags = _release_tags(repo, tag_prefix)
    problems: list[str] = []

    def contains(commit: str) -> bool:
        return git_output(repo, "merge-base", "--is-ancestor", commit, prod) is not None

    def restore(ref: str) -> str:
        return (f"put {branch} back with `git branch -f {branch} {ref}` (or `git reset --keep "
                f"{ref}` while {branch} is checked out), then run `ewspipe release rollback` "
                "if an earlier release should run")

    for entry in completed:
        tag = f"{tag_prefix}{entry['version']}"
        commit = str((entry.get("manifest") or {}).get("release_commit") or "")
        if commit and tag in tags and tags[tag] != commit:
            problems.append(
                f"release tag {tag} points at {tags[tag][:12]}, but the release ledger records "
                f"its release commit as {commit[:12]}: the tag was moved; put it back with "
                f"`git tag -f -a {tag} {commit} -m 'Release {tag}'` (or fetch it from the "
                "remote that has it)")
    released = [t for t in tags if t[len(tag_prefix):] in {e["version"] for e in completed}]
    if released:
        last = max(released, key=lambda t: _version_key(t, tag_prefix))
        if not contains(tags[last]):
            problems.append(
                f"the {branch} branch ({prod[:12]}) does not descend from the last release "
                f"tag {last} ({tags[last][:12]}): it was reset or rewritten, so production "
                f"would run code no release validated; {restore(last)}")
    newest = completed[0]
    commit = str((newest.get("manifest") or {}).get("release_commit") or "")
    tag = f"{tag_prefix}{newest['version']}"
    if commit and not contains(commit) and not any(tag in p for p in problems):
        problems.append(
            f"the {branch} branch ({prod[:12]}) does not contain {commit[:12]}, the release "
            f"commit the release ledger records for its last release {tag}: it was reset or "
            f"rewritten, so production would run code no release validated; "
            f"{restore(commit[:12])}")
    return problems


def check_release(settings: Settings) -> dict[str, Any]:
    """The release the workspace is at (``tag``, ``version``, ``commit``, ``repo`` and the
    ledger's ``manifest``), or :class:`ReleaseGuardFailed` naming what is wrong."""
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
    # before the tag checks: a rewritten branch is named with the release it lost
    ledger_root = settings.layout.env(production_environment(settings)).root
    with reading_ledger(lambda: settings.run.state_url.split("@")[-1] or
                        str(ledger_root / "state.db")):
        # a check creates no state: a --state-dir without a ledger has no releases
        ledger = open_state_db_for_reading(settings.run.state_url, ledger_root)
        releases = ledger.releases() if ledger is not None else []
    lineage = lineage_problems(repo, production_branch=rel.production_branch,
                               tag_prefix=rel.tag_prefix, releases=releases)
    if lineage:
        raise ReleaseGuardFailed("refusing to publish: " + "; and ".join(lineage))
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
    _stray_files(settings, repo, how)
    completed = {e["version"]: e for e in releases if e["status"] == "completed"}
    for tag in sorted(tags):
        version = tag[len(rel.tag_prefix):]
        if version in completed:
            return {"tag": tag, "version": version, "commit": head, "repo": str(repo),
                    "manifest": completed[version]["manifest"] or {}}
    raise ReleaseGuardFailed(f"refusing to publish: {', '.join(tags)} has no completed entry "
                             "in the release ledger (a tag made by hand, or a release that "
                             "did not finish: re-run the release command or see `ewspipe "
                             "release status`)")


def catalog_sha256(record: dict[str, Any]) -> str:
    """One hash of a catalog record (:func:`ewspipe.catalog.record.describe_catalog`)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def engine_differences(released: dict[str, Any], running: dict[str, Any]) -> list[str]:
    """How the running engine differs from the one a release recorded: its source
    fingerprint and each core dependency whose installed version changed (empty: the same
    engine). A release that recorded no engine differs by definition."""
    if not released:
        return ["the release recorded no engine"]
    out = []
    if released.get("fingerprint") != running.get("fingerprint"):
        out.append(f"ewspipe source {str(released.get('fingerprint'))[:12]} -> "
                   f"{str(running.get('fingerprint'))[:12]}")
    old, new = released.get("dependencies") or {}, running.get("dependencies") or {}
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            out.append(f"{name} {old.get(name, 'absent')} -> {new.get(name, 'absent')}")
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_workspace(settings: Settings, release: dict[str, Any], catalog: Catalog, *,
                     allow_engine_change: str | None = None) -> dict[str, Any]:
    """What a production run is about to run, checked against ``release['manifest']``
    (module docstring). Returns the run's release record (tag, version, commit, engine,
    catalog sha256, and the engine override when one was needed); raises
    :class:`ReleaseGuardFailed` listing every difference."""
    manifest = release.get("manifest") or {}
    tag = release["tag"]
    problems: list[str] = []
    actual = describe_catalog(catalog)
    expected = manifest.get("catalog")
    if isinstance(expected, dict) and expected:
        problems += catalog_differences(expected, actual)
    recorded_settings = manifest.get("settings_sha256")
    if (recorded_settings and settings.source_file is not None
            and _sha256(Path(settings.source_file)) != recorded_settings):
        problems.append(f"the settings file {Path(settings.source_file).name} differs "
                            f"from the one {tag} released")
    if problems:
        raise ReleaseGuardFailed(
            f"refusing to run production: the workspace is not what {tag} released:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nrestore the release (`git status`, `git checkout {tag} -- .`) or release "
            "the change through staging (`ewspipe release stage`, `ewspipe release promote`)")
    engine = manifest.get("engine") or {}
    mine = engine_info()
    override = None
    differences = engine_differences(engine, mine)
    if differences:
        what = (f"{tag} was validated with ewspipe {engine.get('ewspipe')}, this is ewspipe "
                f"{mine['ewspipe']}: " + "; ".join(differences) if engine else
                f"{tag} recorded no engine (released before engines were recorded)")
        if not (allow_engine_change and allow_engine_change.strip()):
            raise ReleaseGuardFailed(
                f"refusing to run production: the engine differs from the release: {what}. "
                "Install the engine the release validated, or release again through staging "
                "with this engine; to run anyway pass --allow-engine-change REASON (recorded "
                "on the run and on every forecast it publishes)")
        override = {"reason": allow_engine_change.strip(), "released": engine or None,
                    "running": {"ewspipe": mine["ewspipe"], "fingerprint": mine["fingerprint"],
                                "dependencies": mine["dependencies"]},
                    "differences": differences}
    return {"tag": tag, "version": release["version"], "commit": release["commit"],
            "engine": {"ewspipe": mine["ewspipe"], "fingerprint": mine["fingerprint"]},
            "catalog_sha256": catalog_sha256(actual),
            "engine_override": override}
