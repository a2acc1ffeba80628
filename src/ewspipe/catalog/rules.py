"""Naming and status rules shared by models and ensembles (DOMAIN.md section 3).

Every check raises :class:`~ewspipe.errors.SpecError` (a ``ValueError``) with what was
expected, what was got and how to fix it; none returns a bool.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from ewspipe.errors import SpecError

__all__ = [
    "NAME_PATTERN",
    "TARGET_PATTERN",
    "Status",
    "check_ensemble_member",
    "check_name",
    "check_target",
    "require_runnable",
]

NAME_PATTERN = re.compile(r"^[a-z]+_[a-z]+$")
TARGET_PATTERN = re.compile(r"^ged_[a-z0-9_]+$")


class _Named(Protocol):
    """What the status rules read of a model spec (kept structural: specs build on rules)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> Status: ...


class Status(StrEnum):
    """Deployment status of a model or ensemble."""

    DEPLOYED = "deployed"  # in production output
    SHADOW = "shadow"  # run every month, stored, compared, never published
    BASELINE = "baseline"  # a reference yardstick
    DEPRECATED = "deprecated"  # refuses to run


def _suggest_name(name: str) -> str | None:
    """A plausible adjective_noun spelling of ``name`` (``AmberTree`` -> ``amber_tree``)."""
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()
    words = [w for w in re.split(r"[^a-z]+", snake) if w]
    if len(words) == 2:
        candidate = "_".join(words)
        return candidate if NAME_PATTERN.match(candidate) else None
    return None


def check_name(name: str) -> None:
    """Raise SpecError unless ``name`` is ``adjective_noun``: a-z letters, one underscore."""
    if NAME_PATTERN.match(name):
        return
    suggestion = _suggest_name(name)
    hint = f"; try {suggestion!r}" if suggestion else ""
    raise SpecError(
        f"{name!r} is not an adjective_noun name: use lower-case letters a-z with exactly one "
        f"underscore, e.g. 'amber_tree'{hint}"
    )


def check_target(target: str) -> None:
    """Raise SpecError unless ``target`` names a count column (``ged_*``, e.g. ``ged_sb``)."""
    if TARGET_PATTERN.match(target):
        return
    raise SpecError(
        f"{target!r} is not a count column: targets are raw UCDP death counts named ged_*, "
        "e.g. 'ged_sb' (state-based), 'ged_ns' (non-state) or 'ged_os' (one-sided); "
        "log-scale targets do not exist, a model applies log1p internally"
    )


def require_runnable(spec: _Named, *, path: Path | None = None) -> None:
    """Raise SpecError if the model is deprecated: deprecated models refuse to run."""
    if spec.status is not Status.DEPRECATED:
        return
    where = path if path is not None else Path("models") / f"{spec.name}.toml"
    raise SpecError(
        f"model {spec.name!r} is deprecated and refuses to run; to run it again set "
        f"status = \"shadow\" (or \"deployed\") in {where}, otherwise remove it from the "
        "models or ensemble you asked to run"
    )


def check_ensemble_member(ensemble: str, ensemble_status: Status, member: _Named) -> None:
    """Raise SpecError unless ``member`` may belong to an ensemble with ``ensemble_status``.

    Members must be deployed or shadow; a deployed ensemble takes only deployed members.
    """
    allowed = (
        {Status.DEPLOYED} if ensemble_status is Status.DEPLOYED
        else {Status.DEPLOYED, Status.SHADOW}
    )
    if member.status in allowed:
        return
    wanted = " or ".join(sorted(s.value for s in allowed))
    raise SpecError(
        f"ensemble {ensemble!r} ({ensemble_status.value}) cannot contain model {member.name!r} "
        f"whose status is {member.status.value!r}: members of a {ensemble_status.value} "
        f"ensemble must be {wanted}; change the member's status or drop it from the ensemble"
    )
