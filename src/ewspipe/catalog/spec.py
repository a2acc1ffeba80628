"""A model definition (``models/<adjective_noun>.toml``) as a frozen, typed :class:`ModelSpec`.

The spec is the structural contract of one model file: which keys exist, their types and
their allowed values. Everything that needs other files or other layers (name == file stem,
unique names, known algorithm and hyperparameters, parseable feature expressions) is checked
by :mod:`ewspipe.catalog.loader`, which is the only place that builds specs from files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Annotated, Any

import tomlkit
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, field_validator
from tomlkit.exceptions import ConvertError

from ewspipe.catalog.rules import Status, check_name, check_target
from ewspipe.catalog.sweep import SweepSpec
from ewspipe.panel.schema import Level

__all__ = ["SEMANTIC_KEYS", "ModelSpec", "Status", "canonical_json", "thaw", "toml_value"]


#: Keys that define what a model computes; ``config_hash`` covers exactly these.
SEMANTIC_KEYS = ("name", "level", "target", "algorithm", "features", "hyperparameters")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy (dicts and lists) of a frozen hyperparameter value."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def toml_value(value: Any) -> str | None:
    """``value`` written as a TOML value (``300``, ``"x"``, ``{a = 1}``), or None when TOML
    cannot hold it (None, arbitrary objects)."""
    try:
        if isinstance(value, Mapping):
            table = tomlkit.inline_table()
            table.update(thaw(value))
            return table.as_string()
        return tomlkit.item(thaw(value)).as_string()
    except (ConvertError, TypeError, ValueError):
        return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _dt.date | _dt.time):  # TOML dates and times (datetime is a date)
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only."""
    return json.dumps(
        thaw(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
        default=_json_default,
    )


def _checked_name(value: str) -> str:
    check_name(value)
    return value


def _checked_target(value: str) -> str:
    check_target(value)
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank; write something a reader of the catalog can use")
    return value


#: The checked field types models and ensembles share (their messages name the fix).
Name = Annotated[str, AfterValidator(_checked_name)]
Target = Annotated[str, AfterValidator(_checked_target)]
Text = Annotated[str, AfterValidator(_not_blank)]


class ModelSpec(BaseModel):
    """One model: algorithm + hyperparameters + features + target + level, with its metadata.

    Frozen: fields cannot be reassigned and ``hyperparameters`` is a read-only mapping (nested
    tables too, arrays become tuples); use :meth:`hyperparameters_dict` for a mutable copy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="adjective_noun; equals the file stem")
    level: Level = Field(description="cm or pgm")
    target: Target = Field(description="count column to forecast, e.g. ged_sb")
    algorithm: str = Field(description="a registered algorithm name, e.g. stepshifter")
    features: tuple[str, ...] = Field(description="feature expressions; empty for baselines")
    status: Status
    owner: Text = Field(min_length=1)
    description: Text = Field(min_length=1)
    hyperparameters: Mapping[str, Any] = Field(
        default_factory=dict, description="algorithm parameters; omitted ones take defaults"
    )
    sweep: SweepSpec | None = Field(
        None, description="hyperparameter search ([sweep]); not part of the config hash"
    )

    @field_validator("hyperparameters", mode="after")
    @classmethod
    def _freeze_hyperparameters(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        return _freeze(value)

    @field_serializer("hyperparameters")
    def _serialize_hyperparameters(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return thaw(value)

    def hyperparameters_dict(self) -> dict[str, Any]:
        """The hyperparameters as a plain dict (a fresh copy each call), for registry.create."""
        return thaw(self.hyperparameters)

    def semantic_dict(self) -> dict[str, Any]:
        """What the model computes: every key except owner, description and status."""
        return {
            "name": self.name,
            "level": self.level.value,
            "target": self.target,
            "algorithm": self.algorithm,
            "features": list(self.features),
            "hyperparameters": self.hyperparameters_dict(),
        }

    @cached_property
    def config_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`semantic_dict`: the model's identity.

        Hyperparameters count as written in the file (defaults are not filled in), so the hash
        changes when the file's meaning changes and not when owner, description, status or
        the ``[sweep]`` table do.
        """
        return hashlib.sha256(canonical_json(self.semantic_dict()).encode("ascii")).hexdigest()
