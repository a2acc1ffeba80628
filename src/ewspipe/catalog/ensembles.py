"""Ensemble definitions (``ensembles/<adjective_noun>.toml``) as frozen, typed specs.

An ensemble combines named models of one level and target (DOMAIN.md sections 3 and 4)::

    name = "steady_chorus"
    level = "cm"
    target = "ged_sb"
    members = ["amber_tree", "amber_pine"]
    aggregation = "mean"              # mean | logmean | median
    status = "deployed"
    owner = "forecasting-team"
    description = "Mean of the deployed cm models."

    [weights]                         # optional, mean/logmean: member -> weight (normalised)
    amber_tree = 2
    amber_pine = 1

``aggregation = "logmean"`` combines log1p points (expm1 of their weighted mean: the
combination that suits MSLE). An optional ``[stacking]`` table records learned weights::

    [stacking]                        # `ewspipe models stack NAME --apply` writes it
    shrinkage = 0.5                   # weights = (1 - s) * fitted + s / M; s in [0, 1]
    combine = "logmean"               # or "mean": the aggregation whose weights are learned
    windows = ["2005-2008", "2009-2012", "2013-2016", "2017-2020"]
    fitted = "2026-12-06"             # when; the rest is provenance for review
    fitted_weights = {amber_tree = 0.84, amber_ridge = 0.16}
    stacked_msle = 0.3512             # pooled over the windows, with [weights]
    equal_msle = 0.3561               # the same with equal weights

Only ``shrinkage`` and ``combine`` are inputs (read by ``ewspipe models stack``); the rest is
written with
the ``[weights]`` it explains and, like it, never read when the ensemble runs (the table is
outside the config hash; the weights are inside). See :mod:`ewspipe.ensembles.stacking`.

Optional keys: ``samples`` (``"none"``, default: a point ensemble; ``"pool"``: the members'
draws are pooled, S per row, weighted by resampling with ``seed``), ``seed`` (default 0) and,
for a pgm ensemble, ``reconcile_with`` (a cm ensemble of the same target whose forecast the
cells are rescaled to). Partitions are global (``[partitions]`` in ``ewspipe.toml``), so every
member is trained and evaluated on the same ones by construction.

Validation (:func:`check_ensembles`, called by the catalog loader) reports every problem of
every file, each naming the file and the key: TOML syntax, missing/unknown keys and types,
name rule and name = file stem, names unique across models and ensembles, members that exist
as models and share the ensemble's level and target, the status rule (members deployed or
shadow; a deployed ensemble only deployed members; never a deprecated one), weights that name
exactly the members, and a ``reconcile_with`` that is a cm ensemble of the same target (for a
deployed ensemble, a deployed one).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ewspipe.catalog.files import (
    FileReport,
    Problem,
    Vocabulary,
    display_path,
    read_toml,
    toml_files,
    translate_error,
)
from ewspipe.catalog.rules import Status, check_ensemble_member
from ewspipe.catalog.spec import ModelSpec, Name, Target, Text, canonical_json
from ewspipe.ensembles.aggregate import SampleOption, get_aggregation, weighted
from ewspipe.ensembles.aggregate import names as aggregation_names
from ewspipe.ensembles.stacking import DEFAULT_SHRINKAGE, Combine
from ewspipe.errors import SpecError, did_you_mean
from ewspipe.panel.schema import Level

__all__ = [
    "ENSEMBLE_KEYS",
    "VOCABULARY",
    "EnsembleReport",
    "EnsembleSpec",
    "StackingRecord",
    "check_ensemble_text",
    "check_ensembles",
]


MemberName = Name
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class StackingRecord(BaseModel):
    """The ``[stacking]`` table: the shrinkage to stack with, and the last fit's provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shrinkage: float = Field(
        DEFAULT_SHRINKAGE, ge=0, le=1, allow_inf_nan=False,
        description="weights = (1 - s) * fitted + s / M: 0 the fitted weights, 1 equal weights")
    combine: Combine = Field(
        "logmean", description="the aggregation whose weights are learned: logmean or mean")
    windows: tuple[Text, ...] | None = Field(None, description="the windows the weights were "
                                             "learned on")
    fitted: Text | None = Field(None, description="when the weights were learned (ISO date)")
    fitted_weights: Mapping[str, Score] | None = Field(
        None, description="member -> the learned weight before shrinkage")
    stacked_msle: Score | None = Field(None, description="pooled MSLE with [weights]")
    equal_msle: Score | None = Field(None, description="pooled MSLE with equal weights")

    @field_validator("fitted_weights", mode="after")
    @classmethod
    def _freeze(cls, value: Mapping[str, float] | None) -> Mapping[str, float] | None:
        return None if value is None else MappingProxyType(dict(value))

    @field_serializer("fitted_weights")
    def _serialize(self, value: Mapping[str, float] | None) -> dict[str, float] | None:
        return None if value is None else dict(value)


class EnsembleSpec(BaseModel):
    """One ensemble: members + aggregation (+ pooling, reconciliation), with its metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="adjective_noun; equals the file stem")
    level: Level = Field(description="cm or pgm; every member has this level")
    target: Target = Field(description="count column, e.g. ged_sb; every member forecasts it")
    members: tuple[MemberName, ...] = Field(min_length=1, description="model names")
    aggregation: str = Field(description="a registered aggregation: mean, logmean or median")
    status: Status
    owner: Text = Field(min_length=1)
    description: Text = Field(min_length=1)
    weights: Mapping[str, Weight] | None = Field(
        None, description="member -> weight (> 0) for a weighted mean / weighted pooling")
    samples: SampleOption = Field(
        "none", description="none: point ensemble; pool: pool the members' sample draws")
    seed: int = Field(0, ge=0, description="seed of the pooling draw")
    reconcile_with: MemberName | None = Field(
        None, description="pgm only: a cm ensemble whose forecast the cells are rescaled to")
    stacking: StackingRecord | None = Field(
        None, description="shrinkage for `ewspipe models stack` and its last result")

    @field_validator("aggregation")
    @classmethod
    def _aggregation(cls, value: str) -> str:
        try:
            get_aggregation(value)
        except ValueError as exc:  # InputError
            raise ValueError(f"{exc} Fix: set aggregation to one of them.") from None
        return value

    @field_validator("weights", mode="after")
    @classmethod
    def _freeze_weights(cls, value: Mapping[str, float] | None) -> Mapping[str, float] | None:
        return None if value is None else MappingProxyType(dict(value))

    @field_serializer("weights")
    def _serialize_weights(self, value: Mapping[str, float] | None) -> dict[str, float] | None:
        return None if value is None else dict(value)

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleSpec:
        problems = _consistency(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(f"key '{k}': {m}" for k, m in problems))
        return self

    def semantic_dict(self) -> dict[str, Any]:
        """What the ensemble computes: every key except owner, description, status and the
        [stacking] record (its outcome is [weights])."""
        return {
            "name": self.name, "level": self.level.value, "target": self.target,
            "members": list(self.members), "aggregation": self.aggregation,
            "weights": dict(self.weights) if self.weights is not None else None,
            "samples": self.samples, "seed": self.seed, "reconcile_with": self.reconcile_with,
        }

    @cached_property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`semantic_dict` (status etc. excluded)."""
        return hashlib.sha256(canonical_json(self.semantic_dict()).encode("ascii")).hexdigest()

    def weight_of(self, member: str) -> float:
        """The normalised weight of ``member`` (equal weights without a [weights] table)."""
        if self.weights is None:
            return 1.0 / len(self.members)
        return float(self.weights[member]) / math.fsum(self.weights.values())


ENSEMBLE_KEYS = tuple(EnsembleSpec.model_fields)
_EXAMPLES = {
    "name": ('"steady_chorus"', "the file name without .toml"),
    "level": ('"cm"', '"cm" or "pgm"'),
    "target": ('"ged_sb"', "the members' target"),
    "members": ('["amber_tree", "amber_pine"]', "model names"),
    "aggregation": ('"mean"', "mean, logmean or median"),
    "status": ('"shadow"', "deployed | shadow | baseline | deprecated"),
    "owner": ('"your.name@example.org"', "who answers for the ensemble"),
    "description": ('"What this ensemble adds."', "shown in the catalog"),
    "samples": ('"pool"', '"none" or "pool"'),
    "seed": ("0", "an integer >= 0"),
    "reconcile_with": ('"steady_chorus"', "a cm ensemble"),
    "weights": ("{amber_tree = 2, amber_pine = 1}", "member -> weight"),
    "stacking": ("{shrinkage = 0.5}", "a table"),
}
_STACKING_VOCABULARY = Vocabulary(
    keys=tuple(StackingRecord.model_fields),
    examples={"shrinkage": ("0.5", "a number in [0, 1]"),
              "combine": ('"mean"', '"logmean" or "mean"'),
              "windows": ('["2013-2016", "2017-2020"]', "window labels"),
              "fitted": ('"2026-12-06"', "a date"),
              "fitted_weights": ("{amber_tree = 0.8, amber_pine = 0.2}", "member -> weight"),
              "stacked_msle": ("0.35", "a number >= 0"), "equal_msle": ("0.36", "a number >= 0")},
    unknown="unknown key in [stacking]; allowed: ",
    special={
        "greater_than_equal:shrinkage": "shrinkage must be a number in [0, 1] (0: the fitted "
                                        "weights, 1: equal weights), {got}",
        "less_than_equal:shrinkage": "shrinkage must be a number in [0, 1] (0: the fitted "
                                     "weights, 1: equal weights), {got}",
    },
)
VOCABULARY = Vocabulary(
    keys=ENSEMBLE_KEYS, examples=_EXAMPLES, array_of="model names",
    special={
        "too_short:members": "an ensemble needs at least one member; write e.g. "
                             "members = {example}",
        "greater_than:weights": "a weight must be a finite number > 0, {got}",
        "finite_number:weights": "a weight must be a finite number > 0, {got}",
    },
    tables={"stacking": _STACKING_VOCABULARY},
)
"""How :func:`~ewspipe.catalog.files.translate_error` words problems of an ensemble file."""


def _consistency(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems between keys of one file (members, weights, aggregation, reconcile_with)."""
    out: list[tuple[str, str]] = []
    members = raw.get("members")
    names = [m for m in members if isinstance(m, str)] if isinstance(members, list | tuple) else []
    seen: dict[str, int] = {}
    for i, m in enumerate(members if isinstance(members, list | tuple) else []):
        if isinstance(m, str) and m in seen:
            out.append((f"members[{i}]", f"{m!r} is listed twice (also members[{seen[m]}]); "
                        "list each member once and use [weights] to weigh it more"))
        elif isinstance(m, str):
            seen[m] = i
    weights = raw.get("weights")
    if isinstance(weights, Mapping):
        agg = raw.get("aggregation")
        if isinstance(agg, str) and agg in aggregation_names() and not weighted(agg):
            out.append(("weights", f"aggregation {agg!r} takes no weights; remove [weights] or "
                        "set aggregation = \"mean\" or \"logmean\" (weights also weigh sample "
                        "pooling)"))
        for key in weights:
            if names and key not in names:
                hint = did_you_mean(str(key), names)
                out.append((f"weights.{key}", f"{key!r} is not a member ({', '.join(names)});"
                            f" weights name members only.{hint}"))
        lacking = [m for m in names if m not in weights]
        if lacking:
            out.append(("weights", f"no weight for member(s) {', '.join(map(repr, lacking))}; "
                        "give every member a weight, or drop [weights] for equal weights"))
    stacking = raw.get("stacking")
    fitted = stacking.get("fitted_weights") if isinstance(stacking, Mapping) else None
    if isinstance(fitted, Mapping) and names and sorted(map(str, fitted)) != sorted(names):
        out.append(("stacking.fitted_weights", f"names {sorted(map(str, fitted))} but the "
                    f"members are {sorted(names)}; re-run `ewspipe models stack "
                    f"{raw.get('name', 'NAME')} --apply` or delete the [stacking] record"))
    rec = raw.get("reconcile_with")
    if isinstance(rec, str):
        if raw.get("level") == "cm":
            out.append(("reconcile_with", "only a pgm ensemble is reconciled (with a cm "
                        "ensemble); remove reconcile_with from this cm ensemble"))
        if rec == raw.get("name"):
            out.append(("reconcile_with", "an ensemble cannot be reconciled with itself; name "
                        "a cm ensemble"))
    return out


EnsembleReport = FileReport["EnsembleSpec"]
"""The outcome for one ensemble file (the same report as for model files)."""


def check_ensemble_text(path: Path, text: str) -> tuple[EnsembleReport, dict[str, Any]]:
    """Check one ensemble file on its own (everything except other files); the report and
    the raw TOML table (empty when the TOML is invalid)."""
    shown = display_path(path)
    raw, syntax = read_toml(path, text)
    if raw is None:
        return EnsembleReport(path, None, None, (syntax,) if syntax is not None else ()), {}
    problems = [Problem(shown, k, m) for k, m in _consistency(raw)]
    spec: EnsembleSpec | None = None
    try:
        spec = EnsembleSpec.model_validate(raw)
    except ValidationError as exc:
        problems += [Problem(shown, *translate_error(err, VOCABULARY)) for err in exc.errors()
                     if err["loc"]]  # file-wide (consistency) errors are reported above
    name = raw.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append(Problem(
            shown, "name",
            f"{name!r} does not match the file name {path.name}; the file must be called "
            f"{name}.toml, so rename the file or set name = \"{path.stem}\""))
    return EnsembleReport(path, name if isinstance(name, str) else None,
                          spec if not problems else None, tuple(problems)), raw


def _member_problems(
    shown: str, raw: Mapping[str, Any], models: Mapping[str, ModelSpec],
    model_files: Mapping[str, list[Path]], ensemble_files: Mapping[str, list[Path]],
) -> list[Problem]:
    out: list[Problem] = []
    members = raw.get("members")
    if not isinstance(members, list):
        return out
    level, target, name = raw.get("level"), raw.get("target"), raw.get("name", "?")
    status_text = raw.get("status")
    status = Status(status_text) if status_text in {s.value for s in Status} else None
    for i, member in enumerate(members):
        if not isinstance(member, str):
            continue
        key = f"members[{i}]"
        spec = models.get(member)
        if spec is None:
            if member in model_files:
                where = ", ".join(display_path(p) for p in model_files[member])
                out.append(Problem(shown, key, f"member {member!r} is defined in {where}, which "
                                   "has problems (listed with that file); fix it first"))
            elif member in ensemble_files:
                out.append(Problem(shown, key, f"{member!r} is an ensemble; members are models, "
                                   "so list that ensemble's members here instead"))
            else:
                hint = did_you_mean(member, list(models))
                out.append(Problem(shown, key, f"no model named {member!r}; members must be "
                                   f"models defined in models/.{hint}"))
            continue
        if level in {lv.value for lv in Level} and spec.level.value != level:
            out.append(Problem(shown, key, f"{member!r} is a {spec.level.value} model but this "
                               f"ensemble is {level}; every member has the ensemble's level"))
        if isinstance(target, str) and spec.target != target:
            out.append(Problem(shown, key, f"{member!r} forecasts {spec.target} but this "
                               f"ensemble's target is {target}; every member forecasts the "
                               "ensemble's target"))
        if status is not None and status is not Status.DEPRECATED:
            try:
                check_ensemble_member(str(name), status, spec)
            except SpecError as exc:
                out.append(Problem(shown, key, str(exc)))
    return out


def _reconcile_problems(
    shown: str, raw: Mapping[str, Any], ensembles: Mapping[str, EnsembleSpec],
    ensemble_files: Mapping[str, list[Path]], models: Mapping[str, ModelSpec],
) -> list[Problem]:
    rec = raw.get("reconcile_with")
    if not isinstance(rec, str) or raw.get("level") != "pgm" or rec == raw.get("name"):
        return []
    key = "reconcile_with"
    other = ensembles.get(rec)
    if other is None:
        if rec in ensemble_files:
            where = ", ".join(display_path(p) for p in ensemble_files[rec])
            return [Problem(shown, key, f"ensemble {rec!r} is defined in {where}, which has "
                            "problems (listed with that file); fix it first")]
        if rec in models:
            return [Problem(shown, key, f"{rec!r} is a model; reconcile_with names a cm "
                            "ensemble (an ensemble with one member is fine)")]
        cms = [n for n, e in ensembles.items() if e.level is Level.CM]
        hint = did_you_mean(rec, cms)
        return [Problem(shown, key, f"no ensemble named {rec!r}; cm ensembles: "
                        f"{', '.join(cms) or 'none'}.{hint}")]
    out = []
    if other.level is not Level.CM:
        out.append(Problem(shown, key, f"{rec!r} is a {other.level.value} ensemble; reconcile "
                           "with a cm ensemble"))
    if isinstance(raw.get("target"), str) and other.target != raw["target"]:
        out.append(Problem(shown, key, f"{rec!r} forecasts {other.target} but this ensemble "
                           f"forecasts {raw['target']}; reconcile with a cm ensemble of the "
                           "same target"))
    status = raw.get("status")
    if status != Status.DEPRECATED.value and other.status is Status.DEPRECATED:
        out.append(Problem(shown, key, f"{rec!r} is deprecated and refuses to run; reconcile "
                           "with a runnable cm ensemble"))
    elif status == Status.DEPLOYED.value and other.status is not Status.DEPLOYED:
        out.append(Problem(shown, key, f"a deployed ensemble is reconciled only with a deployed "
                           f"cm ensemble, but {rec!r} is {other.status.value}; deploy it or "
                           "change this ensemble's status"))
    return out


def check_ensembles(
    directory: Path,
    *,
    models: Mapping[str, ModelSpec],
    model_files: Mapping[str, list[Path]],
) -> tuple[EnsembleReport, ...]:
    """Check every ``*.toml`` in ``directory`` against each other and the valid models.

    Args:
        directory: the ensembles folder (missing = no ensembles).
        models: the valid model specs by name.
        model_files: every name declared by a model file (valid or not) -> its files.

    Returns:
        One report per file, sorted by file name; a file is valid when it has no problem.
    """
    if not directory.is_dir():
        return ()
    first: list[tuple[EnsembleReport, dict[str, Any]]] = []
    for path in toml_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            first.append((EnsembleReport(path, None, None, (Problem(
                display_path(path), None, f"not UTF-8 text ({exc}); save it as UTF-8"),)), {}))
            continue
        first.append(check_ensemble_text(path, text))

    files: dict[str, list[Path]] = {}
    for rep, _ in first:
        files.setdefault(rep.name or rep.path.stem, []).append(rep.path)
    valid = {rep.spec.name: rep.spec for rep, _ in first if rep.spec is not None}

    reports: list[EnsembleReport] = []
    for rep, raw in first:
        shown = display_path(rep.path)
        problems = list(rep.problems)
        name = rep.name
        if name is not None:
            others = [p for p in files.get(name, []) if p != rep.path] + list(
                model_files.get(name, []))
            if others:
                listed = ", ".join(display_path(p) for p in others)
                problems.append(Problem(
                    shown, "name", f"{name!r} is also the name of {listed}; names must be "
                    "unique across models and ensembles, so rename one of them (file and "
                    "name key)"))
        problems += _member_problems(shown, raw, models, model_files, files)
        problems += _reconcile_problems(shown, raw, valid, files, models)
        reports.append(EnsembleReport(rep.path, name, rep.spec if not problems else None,
                                      tuple(problems)))
    return tuple(reports)
