"""MLflow model-registry alias ``production``: on the version each deployed model and
ensemble of the release was validated as, never on whatever was registered last.

A model's registered name is its ewspipe name. Every registered version carries tags saying
what made it (:mod:`ewspipe.store.tracking`): ``ewspipe.config_hash``, ``ewspipe.snapshot``,
``ewspipe.code_fingerprint`` and, for an ensemble, ``ewspipe.inputs_hash`` (the config
hashes of everything it combines). For every deployed model and ensemble of a release the
alias goes to the newest version whose tags equal the release manifest's: the config hash of
its ``catalog`` entry, the staging snapshot of its level (``snapshots``) and the engine
fingerprint (``engine``). Where no version matches, one is registered from the staging
evidence the release was let through on: the candidate's hash-verified artifact in
``<state_dir>/staging/artifacts`` (an ensemble: the candidate side's stored
predictions), its pyfunc flavour serving the forecast the candidate side stored for it
(``mlflow.pyfunc.load_model("models:/<name>@production")``; saved under
``<state_dir>/mlruns/registered``). Where there is no evidence either, the alias is
removed from that model (a stale alias would name a version production does not run) and
the note says so. Models that carry the alias but are not deployed by the release lose it.
A rollback points the restored release's models at the versions its ledger entry recorded
(``aliases``).

Never fatal: a release is not undone because the tracking store is unreachable; the notes
say what to redo.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.layout import StateLayout
from ewspipe.panel.snapshot import file_sha256
from ewspipe.partitions import RunType
from ewspipe.release.context import ReleaseContext
from ewspipe.release.git import Git
from ewspipe.release.manifest import release_catalog, release_engine
from ewspipe.release.version import Version
from ewspipe.settings import PRODUCTION_ALIAS, STAGING_ENVIRONMENT, Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.tracking import (
    MANAGED_TAG,
    ensemble_inputs,
    inputs_tags,
    open_client,
    quiet_mlflow,
    register_version,
    require_mlflow,
    store_exists,
    tracking_uri,
)

__all__ = ["ALIAS", "AliasResult", "Wanted", "restored_aliases", "set_aliases",
           "wanted_versions"]

ALIAS = PRODUCTION_ALIAS
_MATCH = ("ewspipe.config_hash", "ewspipe.snapshot", "ewspipe.code_fingerprint")


@dataclass(frozen=True)
class Wanted:
    """The version a deployed model or ensemble of a release must have: its tags."""

    name: str
    kind: str
    level: str
    tags: dict[str, str]
    inputs: dict[str, str] = field(default_factory=dict)  # an ensemble's: name -> config hash

    def matches(self, tags: dict[str, str]) -> bool:
        keys = (*_MATCH, "ewspipe.inputs_hash") if self.kind == "ensemble" else _MATCH
        return all(tags.get(k) == self.tags.get(k) for k in keys)


@dataclass
class AliasResult:
    """``aliases``: name -> the version now carrying the alias; ``notes``: one line each."""

    aliases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _ensemble_links(git: Git, commit: str) -> dict[str, dict[str, Any]]:
    """Members and ``reconcile_with`` of each ensemble file at ``commit``."""
    found: dict[str, dict[str, Any]] = {}
    for path in git.ls_files(commit, "ensembles"):
        if not path.endswith(".toml"):
            continue
        try:
            data = tomllib.loads(git.show(commit, path) or "")
        except tomllib.TOMLDecodeError:
            continue
        name = str(data.get("name") or Path(path).stem)
        found[name] = {"members": list(data.get("members") or []),
                       "reconcile_with": data.get("reconcile_with")}
    return found


def wanted_versions(git: Git, manifest: dict[str, Any], commit: str
                    ) -> tuple[dict[str, Wanted], list[str]]:
    """Per deployed model and ensemble of the release described by ``manifest`` (whose tree
    is ``commit``), the tags its version must carry; plus notes for what cannot be known.
    Reads ``catalog``, ``snapshots`` and ``engine`` with fall-backs for older manifests
    (the catalog and engine of ``commit``)."""
    catalog = manifest.get("catalog") or release_catalog(git, commit)
    engine = manifest.get("engine") or release_engine(git, commit)
    snapshots = manifest.get("snapshots") or {}
    fingerprint = str(engine.get("fingerprint") or "unknown")
    links = _ensemble_links(git, commit)
    definitions = {n: {**e, **links.get(n, {})} for n, e in catalog.items()}
    wanted: dict[str, Wanted] = {}
    notes: list[str] = []
    for name, entry in sorted(catalog.items()):
        if entry.get("status") != "deployed":
            continue
        level, kind = str(entry.get("level")), str(entry.get("kind", "model"))
        snapshot = snapshots.get(level)
        if not snapshot:
            notes.append(f"{name}: the release names no {level} snapshot")
        tags = {"ewspipe.config_hash": str(entry.get("config_hash")),
                "ewspipe.snapshot": str(snapshot), "ewspipe.code_fingerprint": fingerprint,
                "ewspipe.level": level, "ewspipe.model_kind": kind,
                "ewspipe.ewspipe_version": str(engine.get("ewspipe", "unknown"))}
        inputs = ensemble_inputs(name, definitions) if kind == "ensemble" else {}
        if kind == "ensemble":
            tags.update(inputs_tags(inputs))
        wanted[name] = Wanted(name, kind, level, tags, inputs)
    return wanted, notes


# --------------------------------------------------------------------------- evidence


def _verified(directory: Path, files: dict[str, str]) -> bool:
    return bool(files) and all((directory / n).is_file() and file_sha256(directory / n) == h
                               for n, h in files.items())


def _artifact_evidence(settings: Settings, want: Wanted, listed: dict[str, Any]
                       ) -> Path | None:
    """The candidate's staged artifact of ``want``: the one the inference gate listed when
    it matches, else the newest matching one; its files verified against their sha256."""
    root = settings.layout.staging_artifacts
    first = listed.get("artifact")
    # the monthly run's artifacts only: the shared cache also holds the evaluations'
    paths = sorted((root / want.name).glob(f"{RunType.FORECASTING.value}/*/manifest.json"),
                   reverse=True)
    if first:
        paths.insert(0, root / str(first) / "manifest.json")
    for path in paths:
        try:
            art = json.loads(path.read_text())
            key = art["key"]
            if (key["config_hash"] == want.tags["ewspipe.config_hash"]
                    and art["snapshot_id"] == want.tags["ewspipe.snapshot"]
                    and key["code"] == want.tags["ewspipe.code_fingerprint"]
                    and _verified(path.parent, dict(art["files"]))):
                return path.parent
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _prediction_evidence(settings: Settings, want: Wanted, candidate: str) -> Path | None:
    """The candidate side's stored predictions of ``want`` (newest run first): same config
    hash and snapshot as the release and, for an ensemble, the same member config hashes.
    The side ran the candidate's code on the release's engine, so they were made by that
    engine."""
    found: list[tuple[float, Path]] = []
    for side in settings.layout.staging_sides.glob(f"{candidate[:12]}_*"):
        store = PredictionStore(StateLayout(side).env(STAGING_ENVIRONMENT).predictions)
        for part in store.partitions(level=want.level, model=want.name):
            found.append((part.path.stat().st_mtime, part.path))
    for _, path in sorted(found, reverse=True):
        level, run, model = (p.split("=", 1)[1] for p in path.parts[-4:-1])
        try:
            meta = PredictionStore(path.parents[3]).metadata(level, run, model)
        except Exception:  # an unreadable partition is no evidence
            continue
        members = meta.get("members") or {}
        same_members = want.kind != "ensemble" or (
            members and all(want.inputs.get(m) == h for m, h in members.items()))
        if (meta.get("config_hash") == want.tags["ewspipe.config_hash"]
                and meta.get("snapshot") == want.tags["ewspipe.snapshot"] and same_members):
            return path
    return None


@dataclass(frozen=True)
class _Evidence:
    """What a version is registered from: ``source`` (a model's staged artifact, an
    ensemble's stored predictions) and ``forecast``, the stored forecast its pyfunc serves
    (None: the side stored none, the version is registered without the flavour)."""

    source: Path
    forecast: Path | None


def _evidence(settings: Settings, manifest: dict[str, Any], want: Wanted) -> _Evidence | None:
    candidate = str(manifest.get("candidate_commit") or "")
    predictions = _prediction_evidence(settings, want, candidate) if candidate else None
    if want.kind == "ensemble":
        return _Evidence(predictions, predictions) if predictions is not None else None
    listed = (manifest.get("artifacts") or {}).get(want.name) or {}
    artifact = _artifact_evidence(settings, want, listed if isinstance(listed, dict) else {})
    return _Evidence(artifact, predictions) if artifact is not None else None


# --------------------------------------------------------------------------- the registry


def _versions(client: Any, name: str) -> list[Any]:
    from mlflow.exceptions import MlflowException

    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return []


def _pinned(client: Any, name: str, version: str | None) -> str | None:
    """``version`` of ``name`` if the registry still has it."""
    if not version:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version(name, str(version)).version)
    except MlflowException:
        return None


def _drop_alias(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return False
    client.delete_registered_model_alias(name, ALIAS)
    return True


def _managed_with_alias(client: Any) -> list[str]:
    """Registered models made by ewspipe that carry the alias."""
    names, token = [], None
    while True:
        page = client.search_registered_models(max_results=200, page_token=token)
        for rm in page:
            ours = ((rm.tags or {}).get(MANAGED_TAG) == "true"
                    or (rm.description or "").startswith("ewspipe"))
            if ours and ALIAS in (rm.aliases or {}):
                names.append(rm.name)
        token = page.token
        if not token:
            return names


def set_aliases(settings: Settings, manifest: dict[str, Any], tag: str, *, git: Git,
                commit: str | None = None, pinned: dict[str, Any] | None = None
                ) -> AliasResult:
    """Point the ``production`` alias of every deployed model and ensemble of the release
    ``manifest`` (tree ``commit``, default its candidate commit) at its validated version.

    ``pinned`` (a rollback): name -> the version the restored release recorded; used while
    the registry still has it, else the version is found by its tags. Idempotent: a re-run
    finds the versions an interrupted run registered."""
    out = AliasResult()
    if not settings.tracking.enabled:
        out.notes.append("MLflow aliases skipped: tracking is off ([tracking] enabled = false)")
        return out
    commit = commit or str(manifest.get("candidate_commit"))
    wanted, notes = wanted_versions(git, manifest, commit)
    out.notes += notes
    uri = tracking_uri(settings)
    evidence = {n: _evidence(settings, manifest, w) for n, w in wanted.items()}
    if not store_exists(uri) and not any(evidence.values()):
        out.notes.append(f"MLflow aliases skipped: no tracking store yet ({Path(uri).name}) "
                         "and no staging evidence to register")
        return out
    try:
        require_mlflow(uri)
    except ImportError as exc:
        out.notes.append(f"MLflow aliases skipped: mlflow is not installed ({exc})")
        return out
    try:
        with quiet_mlflow():
            _apply(open_client(uri), manifest, tag, wanted, evidence, pinned or {}, out,
                   settings.layout.mlflow_models)
    except Exception as exc:  # the release stands; the note says what to redo by hand
        out.notes.append(f"MLflow aliases not set ({type(exc).__name__}: {exc}); re-run "
                         "after fixing the tracking store: the alias of each deployed model "
                         "belongs on the version whose tags match the release manifest")
    return out


def _apply(client: Any, manifest: dict[str, Any], tag: str, wanted: dict[str, Wanted],
           evidence: dict[str, _Evidence | None], pinned: dict[str, Any], out: AliasResult,
           spare: Path) -> None:
    for name, want in wanted.items():
        version = _pinned(client, name, pinned.get(name))
        how = "as the restored release recorded"
        if version is None:
            matches = [v for v in _versions(client, name) if want.matches(dict(v.tags or {}))]
            if matches:
                version = str(max(matches, key=lambda v: int(v.version)).version)
                how = "matched by config hash, snapshot and code fingerprint"
        found = evidence[name]
        if version is None and found is not None:
            version = register_version(
                client, name, source=found.source.resolve().as_uri(), level=want.level,
                tags={**want.tags, "ewspipe.source": STAGING_ENVIRONMENT,
                      "ewspipe.status": "deployed",
                      "ewspipe.staging_report": str(manifest.get("staging_report")),
                      "ewspipe.registered_by": tag},
                forecast=found.forecast, spare=spare)
            how = "registered from the staging evidence" + (
                "" if found.forecast else "; no stored forecast, so no pyfunc flavour")
        if version is None:
            dropped = _drop_alias(client, name)
            out.notes.append(f"{name}: no registered version matches the release and no "
                             "staging evidence was found; alias "
                             + ("removed" if dropped else "not set"))
            continue
        client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "ewspipe.release", tag)
        out.aliases[name] = version
        out.notes.append(f"{name}: alias {ALIAS} -> version {version} ({how})")
    for name in sorted(set(_managed_with_alias(client)) - set(wanted)):
        client.delete_registered_model_alias(name, ALIAS)
        out.notes.append(f"{name}: alias {ALIAS} removed (not deployed by {tag})")


def restored_aliases(ctx: ReleaseContext, restore_tag: str, tag: str) -> AliasResult:
    """A rollback's aliases: the restored release's deployed models on the versions its
    completed ledger entry recorded (``aliases``), found by the tags of its manifest where
    that map is absent (older ledgers) or names a version the registry no longer has. The
    restored release may itself be a rollback: its own map, and the manifest of the release
    it restored for the tags."""
    entries = {e["version"]: e for e in ctx.ledger.completed()}

    def manifest_of(ref: str) -> dict[str, Any]:
        version = Version.maybe(ref, prefix=ctx.prefix)
        entry = entries.get(str(version)) if version is not None else None
        return dict((entry or {}).get("manifest") or {})

    manifest = manifest_of(restore_tag)
    recorded = manifest.get("aliases")
    pinned = dict(recorded) if isinstance(recorded, dict) else {}
    seen = {restore_tag}
    while manifest.get("kind") == "rollback" and manifest.get("rollback_to") not in seen:
        seen.add(str(manifest.get("rollback_to")))
        manifest = manifest_of(str(manifest.get("rollback_to")))
    return set_aliases(ctx.settings, manifest, tag, git=ctx.git,
                       commit=ctx.git.resolve(restore_tag), pinned=pinned)
