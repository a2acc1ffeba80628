"""The release manifest: what a release is and the evidence it was let through on.

Written to the ledger and, as JSON, into the annotated tag's message, so the tag alone says
what was released: version, commits, lock hash, the engine (ewspipe version, code fingerprint,
dependency versions), the catalog (every model and ensemble with its config hash), the
settings' sha256, data snapshots, artifact hashes, metrics and gate results of the staging
report, overrides with their reasons, time and operator. For a rollback the engine, catalog
and settings are those of the restored tree.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ewspipe.catalog import load_catalog
from ewspipe.catalog.record import describe_catalog
from ewspipe.errors import EwspipeError
from ewspipe.provenance import dependency_versions, engine_info, fingerprint_files
from ewspipe.release.git import Commit, Git

__all__ = ["build_manifest", "lock_hash", "operator", "release_catalog", "release_engine",
           "settings_sha256", "tag_message"]

PACKAGE = "src/ewspipe"


def release_engine(git: Git, commit: str) -> dict[str, Any]:
    """The engine a release at ``commit`` runs: the tree's own package when it carries one
    (``src/ewspipe``; fingerprint of its ``*.py`` files, as the running code computes it),
    else the installed ewspipe. Dependency versions are the installed ones either way."""
    files = [p for p in git.ls_files(commit, PACKAGE) if p.endswith(".py")]
    if not files:
        return {"source": "installed", **engine_info()}
    items = [(p[len(PACKAGE) + 1:], git.show_bytes(commit, p) or b"") for p in files]
    init = git.show(commit, f"{PACKAGE}/__init__.py") or ""
    found = re.search(r"__version__\s*=\s*[\"']([^\"']+)[\"']", init)
    return {"source": "tree", "ewspipe": found.group(1) if found else "unknown",
            "fingerprint": fingerprint_files(items), "dependencies": dependency_versions()}


def settings_sha256(git: Git, commit: str) -> str | None:
    """sha256 of ``ewspipe.toml`` at ``commit`` (None when the tree has none)."""
    data = git.show_bytes(commit, "ewspipe.toml")
    return None if data is None else hashlib.sha256(data).hexdigest()


def release_catalog(git: Git, commit: str, *, models: str = "models",
                    ensembles: str = "ensembles") -> dict[str, dict[str, Any]]:
    """:func:`ewspipe.catalog.record.describe_catalog` of the model and ensemble files at
    ``commit`` (read out of git into a scratch folder; the worktree is not touched). Empty
    when the files do not load (the integrity gate refuses such a tree anyway)."""
    with tempfile.TemporaryDirectory(prefix="ewspipe-catalog-") as tmp:
        root = Path(tmp)
        for folder in (models, ensembles):
            (root / folder).mkdir(parents=True, exist_ok=True)
            for path in git.ls_files(commit, folder):
                dest = root / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(git.show_bytes(commit, path) or b"")
        try:
            catalog = load_catalog(root / models, ensembles_dir=root / ensembles)
        except EwspipeError:  # an invalid tree has no catalog to record
            return {}
        return describe_catalog(catalog)


def lock_hash(git: Git, commit: str) -> str | None:
    """sha256 of ``requirements.lock`` at ``commit`` (None when the file is absent)."""
    text = git.show(commit, "requirements.lock")
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def operator(git: Git) -> str:
    """Who released: ``git config user.name``, else $USER, else the login name."""
    name = git.config("user.name") or os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _artifacts(found: dict[str, Any]) -> dict[str, Any]:
    hashes = found.get("hashes")
    return dict(hashes) if isinstance(hashes, dict) else dict(found)


def _staging_parts(report: dict[str, Any] | None) -> dict[str, Any]:
    if not report:
        return {"staging_report": None, "snapshots": {}, "gates": [], "metrics": {},
                "artifacts": {}}
    gates = list(report.get("gates") or [])
    evidence = {g.get("gate"): g.get("evidence") or {} for g in gates}
    return {
        "staging_report": report.get("report_id"),
        "snapshots": dict(report.get("snapshots") or {}),
        "gates": [{k: g.get(k) for k in ("gate", "status", "summary")} for g in gates],
        "metrics": evidence.get("performance", {}),
        # the inference gate's artifact evidence: per-model hashes when it lists them
        "artifacts": _artifacts((evidence.get("inference") or {}).get("artifacts") or {}),
    }


def build_manifest(git: Git, *, version: str, tag: str, kind: str, candidate: str,
                   production_before: str | None, commits: list[Commit],
                   report: dict[str, Any] | None, overrides: list[dict[str, str]],
                   created_at: str, extra: dict[str, Any] | None = None,
                   engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of releasing the tree of ``candidate`` (for a rollback: the restored
    release's commit). ``engine`` is :func:`release_engine` of it, when already computed."""
    return {
        "version": version,
        "tag": tag,
        "kind": kind,
        "candidate_commit": candidate,
        "production_before": production_before,
        "commits": [{"sha": c.sha, "subject": c.subject} for c in commits],
        "lock_hash": lock_hash(git, candidate),
        "engine": engine if engine is not None else release_engine(git, candidate),
        "catalog": release_catalog(git, candidate),
        "settings_sha256": settings_sha256(git, candidate),
        **_staging_parts(report),
        "overrides": overrides,
        "created_at": created_at,
        "operator": operator(git),
        **(extra or {}),
    }


def tag_message(tag: str, manifest: dict[str, Any]) -> str:
    """The annotated tag's message: one line, a blank line, the manifest as JSON."""
    kind = manifest.get("kind", "promote")
    title = {"rollback": f"Release {tag} (rollback to {manifest.get('rollback_to')})",
             "hotfix": f"Release {tag} (hotfix {manifest.get('hotfix')})"}.get(
        kind, f"Release {tag}")
    return title + "\n\n" + json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
