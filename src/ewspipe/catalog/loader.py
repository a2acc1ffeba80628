"""Read every ``models/*.toml`` once, check everything, and hand back a :class:`Catalog`.

Two entry points share one scan:

- :func:`check_models` never stops at the first problem: it returns a :class:`CheckReport`
  listing every problem of every file (TOML syntax, missing keys, wrong types, bad or
  duplicate names, unknown algorithm or hyperparameters, unparseable feature expressions).
- :func:`load_catalog` returns a validated :class:`Catalog`, or raises one
  :class:`~ewspipe.errors.SpecError` that lists all those problems.

Every problem names the file and the key and says how to fix it, e.g.
``models/amber_tree.toml: key 'hyperparameters.n_estimatorz': unknown hyperparameter ...``.
Ensemble files (``ensembles/*.toml``) are checked too, by
:func:`ewspipe.catalog.ensembles.check_ensembles` (members, status rule, reconciliation), and
their names share one namespace with the models'.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from ewspipe.catalog.ensembles import EnsembleReport, EnsembleSpec, check_ensembles
from ewspipe.catalog.files import (
    FileReport,
    Problem,
    Vocabulary,
    declared_names,
    display_path,
    read_toml,
    toml_files,
    translate_error,
)
from ewspipe.catalog.rules import NAME_PATTERN, Status, require_runnable
from ewspipe.catalog.spec import ModelSpec, thaw
from ewspipe.catalog.sweep import VOCABULARY as SWEEP_VOCABULARY
from ewspipe.catalog.sweep import check_space
from ewspipe.errors import SpecError, did_you_mean
from ewspipe.models import registry
from ewspipe.panel.schema import Level
from ewspipe.partitions import PartitionScheme

__all__ = [
    "VOCABULARY",
    "Catalog",
    "CheckReport",
    "FeatureCheck",
    "FileReport",
    "Problem",
    "check_model_text",
    "check_models",
    "declared_names",
    "default_models_dir",
    "display_path",
    "feature_parser",
    "load_catalog",
    "training_windows",
]

_FEATURES_MODULE = "ewspipe.features.expressions"
_EXAMPLES = {  # key -> (example value, note)
    "name": ('"amber_tree"', "the file name without .toml"),
    "level": ('"cm"', '"cm" or "pgm"'),
    "target": ('"ged_sb"', "a ged_* count column"),
    "algorithm": ('"stepshifter"', "a registered algorithm"),
    "features": ("[]", "a list of feature expressions; empty for baselines"),
    "status": ('"shadow"', "deployed | shadow | baseline | deprecated"),
    "owner": ('"your.name@example.org"', "who answers for the model"),
    "description": ('"What this model adds, in a sentence or two."', "shown in the catalog"),
}
_KEYS = tuple(ModelSpec.model_fields)
VOCABULARY = Vocabulary(
    keys=_KEYS, examples=_EXAMPLES,
    unknown_hint=" Algorithm parameters belong in the [hyperparameters] table.",
    array_example='["..."]', item_example='"lag(ged_sb, 1)"',
    tables={"sweep": SWEEP_VOCABULARY},
)
"""How :func:`~ewspipe.catalog.files.translate_error` words problems of a model file."""
_UNKNOWN_HYPER = re.compile(r"unknown hyperparameter '([^']+)'")
_QUOTED = re.compile(r"'([^']+)'")


def default_models_dir(settings_file: Path | None = None) -> Path:
    """``models/`` beside the settings file, or in the working directory without one."""
    base = settings_file.parent if settings_file is not None else Path.cwd()
    return base / "models"


@dataclass(frozen=True)
class CheckReport:
    """Every model file with its problems, plus notes (e.g. a check that could not run)."""

    models_dir: Path
    ensembles_dir: Path
    files: tuple[FileReport, ...]
    ensemble_names: tuple[str, ...]
    notes: tuple[str, ...] = ()
    ensembles: tuple[EnsembleReport, ...] = ()

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files) and all(e.ok for e in self.ensembles)

    @property
    def problems(self) -> list[Problem]:
        """Every problem: model files first, then ensemble files."""
        return [p for f in (*self.files, *self.ensembles) for p in f.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "models_dir": display_path(self.models_dir),
            "ensembles_dir": display_path(self.ensembles_dir),
            "files_checked": len(self.files),
            "files_invalid": sum(not f.ok for f in self.files),
            "problem_count": len(self.problems),
            "files": [f.to_dict() for f in self.files],
            "ensemble_files_checked": len(self.ensembles),
            "ensemble_files_invalid": sum(not e.ok for e in self.ensembles),
            "ensembles": [e.to_dict() for e in self.ensembles],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Catalog:
    """All valid models and ensembles, each sorted by name."""

    models_dir: Path
    models: Mapping[str, ModelSpec]
    files: Mapping[str, Path]
    ensemble_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    ensembles: Mapping[str, EnsembleSpec] = field(default_factory=lambda: MappingProxyType({}))
    ensemble_files: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str) -> ModelSpec:
        """The model called ``name``; SpecError with a did-you-mean when there is none."""
        try:
            return self.models[name]
        except KeyError:
            pass
        hint = did_you_mean(name, self.models)
        if name in self.ensemble_names:
            hint = f" {name!r} is an ensemble, not a model." + hint
        known = ", ".join(self.models) or "none"
        raise SpecError(
            f"no model named {name!r} in {display_path(self.models_dir)}; known models: "
            f"{known}.{hint} `ewspipe models list` shows them all."
        )

    def path(self, name: str) -> Path:
        """The file that defines model ``name``."""
        self.get(name)
        return self.files[name]

    def filter(
        self, *, level: Level | str | None = None, status: Status | str | None = None
    ) -> list[ModelSpec]:
        """Models of one level and/or status, sorted by name."""
        lvl = Level(level) if level is not None else None
        sts = Status(status) if status is not None else None
        return [
            spec for spec in self.models.values()
            if (lvl is None or spec.level is lvl) and (sts is None or spec.status is sts)
        ]

    def require_runnable(self, name: str) -> ModelSpec:
        """The model ``name`` if it may run; SpecError if it is unknown or deprecated."""
        spec = self.get(name)
        require_runnable(spec, path=Path(display_path(self.files[name])))
        return spec

    def get_ensemble(self, name: str) -> EnsembleSpec:
        """The ensemble called ``name``; SpecError with a did-you-mean when there is none."""
        try:
            return self.ensembles[name]
        except KeyError:
            pass
        hint = did_you_mean(name, [*self.ensembles, *self.models])
        if name in self.models:  # no "did you mean" the very name refused
            hint = f" {name!r} is a model, not an ensemble." + did_you_mean(name, self.ensembles)
        raise SpecError(
            f"no ensemble named {name!r}; known ensembles: {', '.join(self.ensembles) or 'none'}."
            f"{hint} `ewspipe models list` shows models and ensembles."
        )


# --- checking files --------------------------------------------------------------------------


FeatureCheck = Callable[[str, Level | None], object]


def training_windows(partitions: PartitionScheme) -> list[tuple[str, int, int]]:
    """(run type, first, last training month) of the run types whose window is known without
    data: calibration and validation (forecasting trains up to the last observed month, so
    its window is the longest)."""
    return [(rt, p.train.first, p.train.last) for rt, p in
            (("calibration", partitions.partition("calibration")),
             ("validation", partitions.partition("validation")))]


def feature_parser(
    partitions: PartitionScheme | None = None,
) -> tuple[FeatureCheck | None, str | None]:
    """A function checking one feature expression (syntax, and the level when one is given),
    or None plus a note when the feature-expression module is not installed.

    With ``partitions``, a feature must also read back no further than every training window
    allows (``check_lookback``): one that does is missing for every training row.

    The function raises SpecError (a ValueError) naming the expression and the fix.
    """
    try:
        from ewspipe.features.expressions import (
            check_expression,
            check_lookback,
            parse_expression,
        )
    except ModuleNotFoundError as exc:
        if exc.name != _FEATURES_MODULE:
            raise
        return None, (
            f"feature expressions were not validated: {_FEATURES_MODULE} is not available"
        )

    windows = training_windows(partitions) if partitions is not None else []

    def check(text: str, level: Level | None) -> object:
        expr = parse_expression(text)
        if level is not None:
            check_expression(expr, level=level)
        for run_type, first, last in windows:
            check_lookback(expr, first=first, last=last, run_type=run_type)
        return expr

    return check, None


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


def _paths(params: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in params.items():
        yield (*prefix, key)
        if isinstance(value, Mapping):
            yield from _paths(value, (*prefix, key))


def _locate(params: Mapping[str, Any], message: str) -> str | None:
    """The dotted hyperparameter an algorithm's message is about, found from the names it
    quotes (``'n_estimatorz'`` -> ``learner_params.n_estimatorz``), else the nested table
    whose content it quotes, else None."""
    head = message.split("{", 1)[0]
    paths = list(_paths(params))
    for quoted in _QUOTED.findall(head):
        matches = [p for p in paths if p[-1] == quoted]
        if matches:
            return ".".join(max(matches, key=len))
    for path in paths:
        value: Any = params
        for part in path:
            value = value[part]
        if isinstance(value, Mapping) and value and repr(dict(value)) in message:
            return ".".join(path)
    return None


def _hyper_problem(params: Mapping[str, Any], exc: Exception) -> tuple[str, str, str | None]:
    """(key, message with a fix, located sub-key) for an algorithm's complaint."""
    sub = _locate(params, str(exc))
    key = f"hyperparameters.{sub}" if sub else "hyperparameters"
    section = "[hyperparameters" + (f".{sub.rpartition('.')[0]}" if sub and "." in sub
                                    else "") + "]"
    if sub is None:
        fix = "Fix: correct the [hyperparameters] table."
    elif sub in _KEYS:
        fix = (f"Fix: {sub!r} is a top-level key; move it above the [hyperparameters] line "
               "(every key after a [table] header belongs to that table).")
    elif _UNKNOWN_HYPER.search(str(exc)) or " has no parameter " in str(exc):
        fix = f"Fix: remove or rename it in {section}."
    else:
        fix = f"Fix: change its value in {section}."
    return key, f"{_sentence(str(exc))} {fix}", sub


def _without(params: dict[str, Any], dotted: str) -> bool:
    """Remove the (possibly nested) key ``dotted`` from ``params``; False if it is absent."""
    *parents, last = dotted.split(".")
    table: Any = params
    for part in parents:
        table = table.get(part) if isinstance(table, dict) else None
    if not isinstance(table, dict) or last not in table:
        return False
    del table[last]
    return True


def _check_hyperparameters(algorithm: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for every hyperparameter the algorithm rejects.

    ``registry.create`` rejects unknown names; the algorithm's own ``check_params`` (when it
    has one) checks values and nested learner parameters without data. Both report one
    problem at a time, so the offending key is removed (its default applies) and the check
    repeated until it passes or the problem cannot be pinned to a key.
    """
    found: list[tuple[str, str]] = []
    params = thaw(params)
    check_params = getattr(registry.get(algorithm), "check_params", None)
    for _ in range(len(list(_paths(params))) + 1):
        try:
            registry.create(algorithm, params)
            if callable(check_params):
                check_params(params)
        except (ValueError, TypeError) as exc:  # SpecError and MissingDependency included
            key, message, sub = _hyper_problem(params, exc)
            found.append((key, message))
            if sub is not None and _without(params, sub):
                continue
        break
    return found


def check_model_text(
    path: Path, text: str, *, check_feature: FeatureCheck | None = None
) -> FileReport:
    """Check one model file's content on its own (everything except cross-file uniqueness).

    Args:
        path: where the text lives (or will live); its stem must equal ``name``.
        text: the TOML content.
        check_feature: checks one feature expression (see :func:`feature_parser`);
            None skips that check.

    Returns:
        A FileReport with the spec when the file is valid, else every problem found.
    """
    shown = display_path(path)
    problems: list[Problem] = []
    raw, syntax = read_toml(path, text)
    if raw is None:
        return FileReport(path, None, None, (syntax,) if syntax is not None else ())

    spec: ModelSpec | None = None
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        problems += [Problem(shown, *translate_error(err, VOCABULARY)) for err in exc.errors()]

    name = raw.get("name")
    if isinstance(name, str) and NAME_PATTERN.match(name) and name != path.stem:
        problems.append(Problem(
            shown, "name",
            f"{name!r} does not match the file name {path.name}; the file must be called "
            f"{name}.toml, so rename the file or set name = \"{path.stem}\""))

    algorithm = raw.get("algorithm")
    known_algorithm = False
    if isinstance(algorithm, str):
        try:
            registry.get(algorithm)
            known_algorithm = True
        except ValueError as exc:
            problems.append(Problem(
                shown, "algorithm", f"{_sentence(str(exc))} Fix: set algorithm to one of them."))
    hyper = raw.get("hyperparameters", {})
    if known_algorithm and isinstance(hyper, dict):
        hyper_problems = _check_hyperparameters(algorithm, hyper)
        problems += [Problem(shown, k, m) for k, m in hyper_problems]
        if spec is not None and spec.sweep is not None and not hyper_problems:
            problems += [Problem(shown, k, m) for k, m in check_space(
                spec.sweep, algorithm, hyper, _check_hyperparameters,
                defaults=registry.default_params(algorithm))]

    features = raw.get("features")
    if known_algorithm and features in (None, []) and registry.get(algorithm).needs_features:
        problems.append(Problem(shown, "features", f"algorithm {algorithm!r} learns from "
                                "features, and this model lists none. Fix: list at least one, "
                                'e.g. features = ["log1p(ged_sb)", "mmean(log1p(ged_sb), 12)"]'))
    if isinstance(features, list):
        level = raw.get("level")
        known_level = Level(level) if level in {lv.value for lv in Level} else None
        seen: dict[str, int] = {}
        for i, expr in enumerate(features):
            if not isinstance(expr, str):
                continue
            canonical = expr
            if check_feature is not None:
                try:
                    parsed = check_feature(expr, known_level)
                except ValueError as exc:  # SpecError is a ValueError
                    problems.append(Problem(shown, f"features[{i}]", str(exc)))
                    continue
                canonical = getattr(parsed, "name", expr)
            if canonical in seen:
                problems.append(Problem(
                    shown, f"features[{i}]",
                    f"{expr!r} is the same feature as features[{seen[canonical]}] "
                    f"({canonical}); remove one of them"))
                continue
            seen[canonical] = i

    return FileReport(path, name if isinstance(name, str) else None,
                      spec if not problems else None, tuple(problems))


def _duplicates(
    reports: list[FileReport], ensembles: Mapping[str, list[Path]]
) -> list[FileReport]:
    owners: dict[str, list[Path]] = {}
    for rep in reports:
        if rep.name is not None:
            owners.setdefault(rep.name, []).append(rep.path)
    for name, paths in ensembles.items():
        owners.setdefault(name, []).extend(paths)
    out: list[FileReport] = []
    for rep in reports:
        others = [p for p in owners.get(rep.name or "", []) if p != rep.path]
        if rep.name is None or not others:
            out.append(rep)
            continue
        listed = ", ".join(display_path(p) for p in others)
        problem = Problem(
            display_path(rep.path), "name",
            f"{rep.name!r} is also the name of {listed}; names must be unique across models "
            "and ensembles, so rename one of them (file and name key)")
        out.append(FileReport(rep.path, rep.name, None, (*rep.problems, problem)))
    return out


def _resolve_dirs(models_dir: Path | None, ensembles_dir: Path | None) -> tuple[Path, Path]:
    models = models_dir if models_dir is not None else default_models_dir()
    if not models.is_dir():
        what = "is a file, not a folder" if models.exists() else "does not exist"
        raise SpecError(
            f"models directory {display_path(models)} {what}; create a model with "
            "`ewspipe models new NAME` or pass --models-dir pointing at the folder of "
            "<adjective_noun>.toml files"
        )
    ensembles = ensembles_dir if ensembles_dir is not None else models.parent / "ensembles"
    return models, ensembles


def check_models(
    models_dir: Path | None = None, *, ensembles_dir: Path | None = None,
    partitions: PartitionScheme | None = None,
) -> CheckReport:
    """Check every model file and report all problems; never raises for a bad file.

    Args:
        models_dir: folder of ``<name>.toml`` model files (default: ``./models``).
        ensembles_dir: folder of ensemble files whose names are reserved
            (default: ``ensembles`` beside ``models_dir``).
        partitions: the settings' partitions; features must then fit their training
            windows (a lag longer than the training span is a problem).

    Returns:
        A CheckReport; ``report.ok`` is False when any file has a problem.

    Raises:
        SpecError: ``models_dir`` does not exist.
    """
    models, ensembles = _resolve_dirs(models_dir, ensembles_dir)
    check_feature, note = feature_parser(partitions)
    notes = [note] if note else []
    reports: list[FileReport] = []
    for path in toml_files(models):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            reports.append(FileReport(path, None, None, (Problem(
                display_path(path), None, f"not UTF-8 text ({exc}); save it as UTF-8"),)))
            continue
        reports.append(check_model_text(path, text, check_feature=check_feature))
    ensemble_names = declared_names(ensembles)
    if not reports:
        notes.append(f"no model files in {display_path(models)}; create one with "
                     "`ewspipe models new NAME`")
    files = tuple(_duplicates(reports, ensemble_names))
    model_files: dict[str, list[Path]] = {}
    for f in files:
        model_files.setdefault(f.name or f.path.stem, []).append(f.path)
    return CheckReport(
        models_dir=models,
        ensembles_dir=ensembles,
        files=files,
        ensemble_names=tuple(sorted(ensemble_names)),
        notes=tuple(notes),
        ensembles=check_ensembles(
            ensembles, models={f.spec.name: f.spec for f in files if f.spec is not None},
            model_files=model_files),
    )


def load_catalog(
    models_dir: Path | None = None, *, ensembles_dir: Path | None = None,
    partitions: PartitionScheme | None = None,
) -> Catalog:
    """The validated catalog of every model file.

    Args:
        models_dir: folder of ``<name>.toml`` model files (default: ``./models``).
        ensembles_dir: folder of ensemble files (default: ``ensembles`` beside ``models_dir``).
        partitions: also check features against these training windows (see
            :func:`check_models`).

    Raises:
        SpecError: the folder does not exist, or any file is invalid; the message lists every
            problem of every file.
    """
    report = check_models(models_dir, ensembles_dir=ensembles_dir, partitions=partitions)
    if not report.ok:
        bad = sum(not f.ok for f in report.files)
        where = f"{bad} model file(s) under {display_path(report.models_dir)}"
        bad_ensembles = sum(not e.ok for e in report.ensembles)
        if bad_ensembles:
            where = (f"{where} and " if bad else "") + (
                f"{bad_ensembles} ensemble file(s) under {display_path(report.ensembles_dir)}")
        lines = [f"{len(report.problems)} problem(s) in {where}:"]
        lines += [f"  {p}" for p in report.problems]
        lines.append("Fix them and re-run `ewspipe models check`.")
        raise SpecError("\n".join(lines))
    specs = sorted((f.spec for f in report.files if f.spec is not None), key=lambda s: s.name)
    files = {f.spec.name: f.path for f in report.files if f.spec is not None}
    return Catalog(
        models_dir=report.models_dir,
        models=MappingProxyType({s.name: s for s in specs}),
        files=MappingProxyType(dict(sorted(files.items()))),
        ensemble_names=report.ensemble_names,
        notes=report.notes,
        ensembles=MappingProxyType({e.spec.name: e.spec for e in sorted(
            report.ensembles, key=lambda e: e.path.name) if e.spec is not None}),
        ensemble_files=MappingProxyType({e.spec.name: e.path for e in report.ensembles
                                         if e.spec is not None}),
    )
