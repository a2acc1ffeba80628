"""The ``[sweep]`` table of a model file: a hyperparameter search, and writing its winner back.

A model file may say how its hyperparameters are tuned::

    [sweep]
    trials = 30                 # budget: completed + failed trials of the stored study
    seed = 20240701             # same seed, space and batch size -> the same trials
    # metric = "msle"           # default: msle, or crps when the model draws samples
    # scheme = "pooled"         # pooled | step | month | sequence (mean over that scheme)

    [sweep.space]
    learner_params.n_estimators = { int = [50, 200], step = 25 }
    learner_params.learning_rate = { float = [0.01, 0.2], log = true }
    learner_params.num_leaves = { int = [7, 63], log = true }
    log_target = { choices = [true, false] }

Keys of ``[sweep.space]`` are hyperparameter names, dotted for nested tables
(``learner_params.num_leaves``; quoted ``"learner_params.num_leaves"`` means the same). Each
value is one dimension: ``{int = [low, high]}`` or ``{float = [low, high]}`` (inclusive, with
optional ``log = true`` or ``step = ...``) or ``{choices = [...]}`` (strings, numbers, booleans).

The table is validated here into a frozen :class:`SweepSpec` (structure and values); whether
the algorithm accepts every value of the space is checked by the catalog loader through
:func:`check_space`. The sweep is not part of the model's identity: ``config_hash`` ignores
it, so adding or editing a sweep keeps artifacts valid, while applying its winner
(:func:`write_result`) changes the hyperparameters and so the hash.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_serializer,
    field_validator,
    model_validator,
)

from ewspipe.atomic import write_text
from ewspipe.errors import SpecError

__all__ = [
    "OBJECTIVES",
    "SAMPLE_METRICS",
    "SCHEMES",
    "Dimension",
    "SweepSpec",
    "apply_values",
    "check_space",
    "flatten_space",
    "get_dotted",
    "translate_error",
    "untuned",
    "write_result",
]

Direction = Literal["minimize", "maximize"]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr

#: Metrics a sweep may optimise, with their direction (losses down, skill scores up).
OBJECTIVES: Mapping[str, Direction] = MappingProxyType({
    "msle": "minimize", "rmsle": "minimize", "mse": "minimize", "mae": "minimize",
    "crps": "minimize", "twcrps": "minimize", "mis": "minimize", "brier": "minimize",
    "pearson": "maximize", "ap": "maximize", "roc_auc": "maximize",
})
#: Of those, the metrics scored on samples (the model must draw n_samples > 1).
SAMPLE_METRICS = frozenset({"crps", "twcrps", "mis", "brier", "ap", "roc_auc"})
SCHEMES = ("pooled", "step", "month", "sequence")
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KINDS = ("int", "float", "choices")
_DIMENSION_KEYS = (*_KINDS, "log", "step")
_SWEEP_KEYS = ("space", "trials", "seed", "metric", "scheme", "sampler", "batch_size",
               "startup_trials", "result")
_FORMS = ("write {int = [low, high]}, {float = [low, high], log = true} or "
          "{choices = [a, b, ...]}")


class Dimension(BaseModel):
    """One searched hyperparameter: an int or float range (inclusive), or a list of choices."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    int_range: tuple[StrictInt, StrictInt] | None = Field(None, alias="int")
    float_range: tuple[StrictFloat | StrictInt, StrictFloat | StrictInt] | None = Field(
        None, alias="float")
    choices: tuple[Scalar, ...] | None = None
    log: StrictBool = False
    step: StrictInt | StrictFloat | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Dimension:
        given = [k for k, v in (("int", self.int_range), ("float", self.float_range),
                                ("choices", self.choices)) if v is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise ValueError(f"a dimension is exactly one of int, float or choices (got {what}); "
                             f"{_FORMS}")
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty; list at least two values")
            keys = [(type(c).__name__, c) for c in self.choices]
            if len(set(keys)) != len(keys):
                raise ValueError(f"choices {list(self.choices)!r} repeat a value; list each once")
            if self.log or self.step is not None:
                raise ValueError("log and step apply to int and float ranges, not to choices")
            return self
        low, high = self.bounds
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"range [{low}, {high}] must have finite low < high; a fixed value "
                             "belongs in [hyperparameters], not in the sweep")
        if self.log and low <= 0:
            raise ValueError(f"log = true needs low > 0, got low = {low}")
        if self.log and self.step is not None:
            raise ValueError("log = true and step cannot be combined; drop one of them")
        if self.step is not None:
            self._check_step(low, high)
        return self

    def _check_step(self, low: float, high: float) -> None:
        step = self.step
        assert step is not None
        if self.int_range is not None and (isinstance(step, float) or step < 1):
            raise ValueError(f"step of an int range must be an integer >= 1, got {step!r}")
        if step <= 0:
            raise ValueError(f"step must be > 0, got {step!r}")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ValueError(f"high - low = {high - low:g} is not a multiple of step {step:g}; "
                             "adjust high so the range ends on a step")

    @property
    def kind(self) -> Literal["int", "float", "choices"]:
        return "int" if self.int_range is not None else \
            "float" if self.float_range is not None else "choices"

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range; ValueError for choices."""
        pair = self.int_range if self.int_range is not None else self.float_range
        if pair is None:
            raise ValueError("a choices dimension has no bounds")
        low, high = pair
        return (low, high) if self.int_range is not None else (float(low), float(high))

    def probes(self) -> tuple[Any, ...]:
        """Values that exercise the dimension: both ends of a range, or every choice."""
        if self.choices is not None:
            return self.choices
        return self.bounds

    def describe(self) -> str:
        """Short text, e.g. ``int [7, 63] log`` or ``choices ['a', 'b']``."""
        if self.choices is not None:
            return f"choices {list(self.choices)!r}"
        low, high = self.bounds
        extra = " log" if self.log else f" step {self.step:g}" if self.step is not None else ""
        return f"{self.kind} [{low:g}, {high:g}]{extra}"


def _is_dimension(value: Mapping[str, Any]) -> bool:
    """A table is a dimension when it holds any non-table value (``int = [..]``, ``log``);
    a table of tables is a namespace of dotted keys (``learner_params.num_leaves = {...}``)."""
    return not value or any(not isinstance(v, Mapping) for v in value.values())


def flatten_space(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{"learner_params": {"num_leaves": {...}}}`` -> ``{"learner_params.num_leaves": {...}}``.

    Quoted dotted keys and nested tables mean the same; both forms may be mixed. Keys come
    back sorted, so reordering the lines of a space does not change which trials are run.

    Raises:
        ValueError: a key that is not an identifier (or dotted identifiers), a value that is
            not a table, the same key twice, or a key nested inside another swept key.
    """
    out: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            dotted = f"{prefix}{key}"
            parts = dotted.split(".")
            if not all(_SEGMENT.match(p) for p in parts):
                raise ValueError(f"key {dotted!r} is not a hyperparameter name (letters, digits, "
                                 "underscores; dots separate nested tables)")
            if not isinstance(value, Mapping):
                raise ValueError(f"{dotted!r} = {value!r} is not a dimension; {_FORMS}")
            if _is_dimension(value):
                if dotted in out:
                    raise ValueError(f"{dotted!r} is given twice (dotted and nested forms "
                                     "mean the same); keep one")
                out[dotted] = value
            else:
                walk(value, dotted + ".")

    walk(raw, "")
    keys = sorted(out)
    for a in keys:
        for b in keys:
            if b.startswith(a + "."):
                raise ValueError(f"{b!r} lies inside {a!r}, which is itself searched; "
                                 "search one or the other")
    return {k: out[k] for k in keys}  # sorted: the order of lines in the file does not matter


class SweepSpec(BaseModel):
    """The validated ``[sweep]`` table of a model file (frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: Mapping[str, Dimension] = Field(
        description="dotted hyperparameter name -> dimension; at least one")
    trials: StrictInt = Field(30, ge=1, description="budget: completed + failed trials")
    seed: StrictInt = Field(0, ge=0, description="seeds the sampler (per trial)")
    metric: StrictStr | None = Field(
        None, description="metric to optimise; default msle, or crps for sample models")
    scheme: Literal["pooled", "step", "month", "sequence"] = Field(
        "pooled", description="pooled value, or the mean over that scheme's groups")
    sampler: Literal["tpe", "random"] = "tpe"
    batch_size: StrictInt = Field(
        4, ge=1, description="trials proposed together and evaluated concurrently")
    startup_trials: StrictInt | None = Field(
        None, ge=0, description="random trials before TPE starts (default: Optuna's 10)")
    result: Mapping[str, Any] | None = Field(
        None, description="written by `ewspipe models sweep --apply`: what was applied")

    @field_validator("space", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value  # pydantic reports the type
        flat = flatten_space(value)
        if not flat:
            raise ValueError("the search space is empty; add at least one dimension, e.g. "
                             "learner_params.num_leaves = { int = [7, 63], log = true }")
        return flat

    @field_validator("space", mode="after")
    @classmethod
    def _freeze_space(cls, value: Mapping[str, Dimension]) -> Mapping[str, Dimension]:
        return MappingProxyType(dict(value))

    @field_validator("result", mode="after")
    @classmethod
    def _freeze_result(cls, value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return None if value is None else MappingProxyType(dict(value))

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        if value is None or value in OBJECTIVES:
            return value
        close = difflib.get_close_matches(value, OBJECTIVES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"metric {value!r} cannot be optimised; use one of "
                         f"{', '.join(OBJECTIVES)}.{hint}")

    @field_serializer("space")
    def _serialize_space(self, value: Mapping[str, Dimension]) -> dict[str, Any]:
        return {k: v.model_dump(exclude_none=True, exclude_defaults=True)
                for k, v in value.items()}

    @field_serializer("result")
    def _serialize_result(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _thaw(value)

    def objective(self, n_samples: int) -> tuple[str, Direction]:
        """(metric, direction) to optimise for a model drawing ``n_samples`` per prediction."""
        metric = self.metric or ("crps" if n_samples > 1 else "msle")
        return metric, OBJECTIVES[metric]

    def search_dict(self) -> dict[str, Any]:
        """What decides which trials are run (everything except the budget and the result)."""
        return {"space": self._serialize_space(self.space), "seed": self.seed,
                "metric": self.metric, "scheme": self.scheme, "sampler": self.sampler,
                "batch_size": self.batch_size, "startup_trials": self.startup_trials}


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


# --------------------------------------------------------------------- errors and checks ---


def translate_error(err: Mapping[str, Any]) -> tuple[str, str]:
    """(dotted key, message with a fix) for a pydantic error inside ``[sweep]``."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    kind = err["type"]
    value = err.get("input")
    last = loc[-1] if loc else "sweep"
    in_dimension = len(loc) >= 3 and loc[1] == "space"
    if kind == "extra_forbidden":
        allowed = _DIMENSION_KEYS if in_dimension else _SWEEP_KEYS
        close = difflib.get_close_matches(last, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = "a dimension" if in_dimension else "[sweep]"
        return key, f"unknown key in {where}; allowed: {', '.join(allowed)}.{hint}"
    if kind == "missing":
        return key, ("required key is missing; add a [sweep.space] table with at least one "
                     "dimension, e.g. learner_params.num_leaves = { int = [7, 63], log = true }")
    if kind == "value_error":
        return key, str(err.get("ctx", {}).get("error", err["msg"]))
    if kind in ("dict_type", "mapping_type", "model_type", "model_attributes_type"):
        return key, f"expected a table, got {value!r}; {_FORMS}" if in_dimension else \
            f"expected a table, got {value!r}; write it as a [{key}] section"
    if kind == "literal_error":
        return key, f"got {value!r}; expected {err.get('ctx', {}).get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than"):
        return key, f"got {value!r}; must be {err['msg'].lower().removeprefix('input should be ')}"
    return key, f"{err['msg']} (got {value!r})"


def get_dotted(params: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """(found, value) of the possibly nested key ``dotted`` in ``params``."""
    table: Any = params
    for part in dotted.split("."):
        if not isinstance(table, Mapping) or part not in table:
            return False, None
        table = table[part]
    return True, table


def _set_dotted(params: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    table = params
    for part in parents:
        child = table.get(part)
        if not isinstance(child, dict):
            child = {}
            table[part] = child
        table = child
    table[last] = value


def apply_values(hyperparameters: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh copy of ``hyperparameters`` with each dotted key of ``values`` set (nested
    tables are created as needed, e.g. a missing ``learner_params``)."""
    params = _thaw(hyperparameters)
    for dotted, value in values.items():
        _set_dotted(params, dotted, value)
    return params


def untuned(hyperparameters: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A fresh copy of ``hyperparameters`` without the searched ``keys``, so each takes its
    default: the "untuned" reference a sweep is measured against."""
    params = _thaw(hyperparameters)
    for dotted in keys:
        *parents, last = dotted.split(".")
        table: Any = params
        for part in parents:
            table = table.get(part) if isinstance(table, dict) else None
        if isinstance(table, dict):
            table.pop(last, None)
    return params


HyperCheck = Callable[[str, dict[str, Any]], list[tuple[str, str]]]


def check_space(
    sweep: SweepSpec,
    algorithm: str,
    hyperparameters: Mapping[str, Any],
    check: HyperCheck,
    *,
    defaults: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """(key, message) for every searched dimension the algorithm rejects, and for a metric
    the model cannot be scored on.

    Args:
        sweep: the validated ``[sweep]`` table.
        algorithm: the model's (known) algorithm.
        hyperparameters: the model's hyperparameters as written (already valid).
        check: ``(algorithm, params) -> [(key, message)]``, the catalog's hyperparameter check.
        defaults: the algorithm's default hyperparameters.

    The space is probed at its corners (all lows, all highs, and each choice in turn); only
    when a probe fails is each dimension probed alone, so the problem names its key.
    """
    problems: list[tuple[str, str]] = []
    merged = {**defaults, **_thaw(hyperparameters)}
    if sweep.metric in SAMPLE_METRICS and "n_samples" not in sweep.space and \
            not (isinstance(merged.get("n_samples"), int) and merged["n_samples"] > 1):
        problems.append(("sweep.metric", (
            f"metric {sweep.metric!r} scores samples, but this model draws none (n_samples = "
            f"{merged.get('n_samples', 1)!r}); set hyperparameters.n_samples > 1 or pick a point "
            "metric such as 'msle'")))
    for dotted in sweep.space:
        top = dotted.split(".", 1)[0]
        if top not in defaults:
            close = difflib.get_close_matches(top, defaults, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append((f"sweep.space.{dotted}", (
                f"unknown hyperparameter {top!r} for algorithm {algorithm!r}; valid: "
                f"{', '.join(sorted(defaults))}.{hint} Fix: rename it in [sweep.space].")))
    if problems:
        return problems
    dims = dict(sweep.space)
    width = max(len(d.probes()) for d in dims.values())
    corners = [{k: d.probes()[i % len(d.probes())] for k, d in dims.items()} for i in range(width)]
    if all(not check(algorithm, apply_values(hyperparameters, c)) for c in corners):
        return problems
    for dotted, dim in dims.items():
        for value in dim.probes():
            found = check(algorithm, apply_values(hyperparameters, {dotted: value}))
            if found:
                message = found[0][1].split(" Fix: ")[0]
                problems.append((f"sweep.space.{dotted}", (
                    f"value {value!r} of the search space is rejected by algorithm "
                    f"{algorithm!r}: {message} Fix: change the dimension in [sweep.space].")))
                break
    if not problems:  # each value is fine alone, only a combination fails
        problems.append(("sweep.space", (
            f"a combination of the searched values is rejected by algorithm {algorithm!r}: "
            f"{check(algorithm, apply_values(hyperparameters, corners[0]))[0][1]}")))
    return problems


# --------------------------------------------------------------------- writing the winner ---


def _table_for(container: Any, parts: list[str]) -> Any:
    """The (possibly new) tomlkit table at ``parts`` below ``container``."""
    for part in parts:
        if part not in container:
            container[part] = tomlkit.table()
        container = container[part]
        if not isinstance(container, Mapping):
            raise SpecError(f"cannot write below {'.'.join(parts)!r}: it is not a table")
    return container


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        table.update({str(k): _toml_ready(v) for k, v in value.items()})
        return table
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return value.item()
    return value


def write_result(
    path: Path,
    *,
    values: Mapping[str, Any],
    result: Mapping[str, Any],
    expected_config_hash: str | None = None,
) -> str:
    """Write the winning ``values`` into the model file's ``[hyperparameters]`` and the
    sweep's ``result`` into ``[sweep.result]``, keeping every other line, comment and format.

    Args:
        path: the model file.
        values: dotted hyperparameter name -> value.
        result: what to record (run id, study, trial, scores ...); ``previous`` (the values
            as written before, for review) is added here.
        expected_config_hash: refuse (SpecError) when the file on disk no longer has this
            config hash, i.e. it changed while the sweep ran.

    Returns:
        The new file's config hash. The new text is validated like every model file before it
        atomically replaces the old one (temp file + rename); nothing is written on error.
    """
    from ewspipe.catalog.loader import check_model_text, display_path, feature_parser

    shown = display_path(path)
    text = path.read_text(encoding="utf-8")
    check_feature, _ = feature_parser()
    before = check_model_text(path, text, check_feature=check_feature)
    if before.spec is None:
        raise SpecError(f"{shown} is invalid, so the sweep result is not written: "
                        + "; ".join(str(p) for p in before.problems))
    if expected_config_hash is not None and before.spec.config_hash != expected_config_hash:
        raise SpecError(
            f"{shown} changed while the sweep ran (config hash {before.spec.config_hash[:12]}, "
            f"swept {expected_config_hash[:12]}); nothing was written. Re-run the sweep on "
            "the current file")
    doc = tomlkit.parse(text)
    hyper = before.spec.hyperparameters
    previous = {}
    for dotted, value in values.items():
        found, old = get_dotted(hyper, dotted)
        previous[dotted] = _thaw(old) if found else "default"
        *parents, last = dotted.split(".")
        table = _table_for(doc, ["hyperparameters", *parents])
        table[last] = _toml_ready(value)
    sweep = _table_for(doc, ["sweep"])
    record = tomlkit.table()
    for key, value in {**result, "previous": previous}.items():
        if value is not None:
            record.add(key, _toml_ready(value))
    if "result" in sweep:
        del sweep["result"]
    sweep.add("result", record)
    new_text = tomlkit.dumps(doc)

    after = check_model_text(path, new_text, check_feature=check_feature)
    expected = apply_values(hyper, values)
    if after.spec is None or after.spec.hyperparameters_dict() != expected:
        got = after.spec.hyperparameters_dict() if after.spec is not None else None
        problems = "; ".join(str(p) for p in after.problems) or (
            f"hyperparameters would read {got}, expected {expected}")
        raise SpecError(f"writing the sweep result into {shown} would not give the expected "
                        f"model ({problems}); nothing was written")
    _replace(path, new_text)
    return after.spec.config_hash


def _replace(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (temp file in the same folder + rename)."""
    write_text(path, text, mode=path.stat().st_mode & 0o777)

