"""The catalog's leaf: file reports, TOML reading helpers and the one pydantic-error translator.

Model files, ensemble files and the ``[sweep]`` table are all reported the same way (a
:class:`Problem` naming file and key, a :class:`FileReport` per file), so the helpers they
share live here, below every other catalog module: this module imports nothing from the
catalog, which is what keeps the package free of import circles.

Each schema's messages differ only in data (its keys, examples and a few special fixes), so
one :func:`translate_error` serves them all, driven by a :class:`Vocabulary` per table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ewspipe.errors import did_you_mean

__all__ = [
    "FileReport",
    "Problem",
    "Vocabulary",
    "declared_names",
    "display_path",
    "dotted_key",
    "got",
    "read_toml",
    "thaw",
    "toml_files",
    "translate_error",
]

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (``models/x.toml``)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy (dicts and lists) of a frozen (TOML) value."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file; ``key`` is dotted (``hyperparameters.learner_params.x``,
    ``features[2]``) or None for file-level problems such as TOML syntax."""

    file: str
    key: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        if self.key is not None:
            return f"{self.file}: key '{self.key}': {self.message}"
        if self.line is not None:
            return f"{self.file}: line {self.line}: {self.message}"
        return f"{self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "key": self.key, "line": self.line,
                "message": self.message, "text": str(self)}


class _Spec(Protocol):
    @property
    def config_hash(self) -> str: ...


SpecT = TypeVar("SpecT", bound=_Spec)


@dataclass(frozen=True)
class FileReport(Generic[SpecT]):
    """The outcome for one model or ensemble file: its spec when valid, its problems
    otherwise."""

    path: Path
    name: str | None
    spec: SpecT | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": display_path(self.path),
            "name": self.name,
            "ok": self.ok,
            "config_hash": self.spec.config_hash if self.spec is not None and self.ok else None,
            "problems": [p.to_dict() for p in self.problems],
        }


# --- reading files ---------------------------------------------------------------------------


def toml_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of ``directory``, sorted, hidden files skipped."""
    return sorted(p for p in directory.glob("*.toml") if p.is_file() and not p.name.startswith("."))


def declared_names(directory: Path) -> dict[str, list[Path]]:
    """``name`` -> files declaring it, read leniently (the file stem when ``name`` is unusable).

    Used for ensembles, which the catalog reads only for their names, and by the scaffold.
    """
    names: dict[str, list[Path]] = {}
    if not directory.is_dir():
        return names
    for path in toml_files(directory):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raw = {}
        name = raw.get("name")
        names.setdefault(name if isinstance(name, str) else path.stem, []).append(path)
    return names


def read_toml(path: Path, text: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """(the parsed table, None), or (None, a Problem naming the line and the fix)."""
    try:
        return tomllib.loads(text), None
    except RecursionError:  # tomllib recurses per nested array or inline table
        return None, Problem(
            display_path(path), None, "invalid TOML: arrays or inline tables nested too deeply "
            "to read; a model file needs at most two levels (features = [\"...\"], tables "
            "under [hyperparameters]): fix the nesting")
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.search(str(exc))
        line = int(match.group(1)) if match else None
        if line is None and "end of document" in str(exc):
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
        return None, Problem(
            display_path(path), None, f"invalid TOML: {exc}; fix the syntax there (strings "
            "need double quotes, arrays brackets, each key once per table)", line)


# --- the one pydantic-error translator -------------------------------------------------------


def dotted_key(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the key a user reads: ``features[2]``, ``sweep.space.x``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def got(value: Any) -> str:
    """``got 3 (integer)``: the value as written and its TOML kind."""
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)
    return f"got {value!r} ({kind})"


_TABLE_KINDS = ("dict_type", "mapping_type", "model_type", "model_attributes_type")


@dataclass(frozen=True)
class Vocabulary:
    """What the messages about one TOML table may say.

    Attributes:
        keys: the table's allowed keys (listed, and matched for a did-you-mean).
        examples: key -> (example value, note), used in "add `key = example` (note)".
        unknown: how an unknown key is introduced, before the list of allowed keys.
        unknown_hint: said when an unknown key resembles no allowed one.
        array_of: what an array of the table holds ("strings", "model names").
        array_example: the example array, or None to use the key's example.
        item_example: the example for a bad string inside an array (None: the key's).
        special: message templates for ``"kind"`` or ``"kind:key"`` (``str.format`` fields
            ``{top}``, ``{key}``, ``{example}``, ``{got}``; literal braces doubled), taking
            precedence over the general messages.
        tables: key -> the vocabulary of the sub-table at that key.
        any_key: the vocabulary of every sub-table (a table of tables, e.g. a search space).
    """

    keys: tuple[str, ...] = ()
    examples: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    unknown: str = "unknown key; allowed keys: "
    unknown_hint: str = ""
    array_of: str = "strings"
    array_example: str | None = None
    item_example: str | None = None
    special: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, Vocabulary] = field(default_factory=dict)
    any_key: Vocabulary | None = None


def translate_error(err: Mapping[str, Any], vocabulary: Vocabulary) -> tuple[str, str]:
    """(dotted key, message with a fix) for one pydantic error of a table ``vocabulary``
    describes (the error's ``loc`` descends into sub-tables through ``tables``/``any_key``)."""
    full = tuple(err["loc"])
    loc, vocab = full, vocabulary
    while len(loc) > 1:
        sub = vocab.tables.get(str(loc[0])) or vocab.any_key
        if sub is None:
            break
        loc, vocab = loc[1:], sub
    key = dotted_key(full)
    kind = err["type"]
    value = err.get("input")
    top = str(loc[0]) if loc else ""
    example, note = vocab.examples.get(top, ('"..."', ""))
    special = vocab.special.get(f"{kind}:{top}", vocab.special.get(kind))
    if special is not None:
        return key, special.format(top=top, key=key, example=example, got=got(value))
    if kind == "missing":
        return key, f"required key is missing; add `{top} = {example}` ({note})"
    if kind == "extra_forbidden":
        hint = did_you_mean(top, vocab.keys) or vocab.unknown_hint
        return key, f"{vocab.unknown}{', '.join(vocab.keys)}.{hint}"
    if kind == "value_error":
        return key, str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "string_type":
        shown = vocab.item_example if len(loc) > 1 and vocab.item_example else \
            f"{top} = {example}"
        return key, f"expected a string, {got(value)}; write e.g. {shown}"
    if kind in ("tuple_type", "list_type"):
        return key, (f"expected an array of {vocab.array_of}, {got(value)}; write e.g. "
                     f"{top} = {vocab.array_example or example}")
    if kind in _TABLE_KINDS:
        return key, f"expected a table, {got(value)}; write it as a [{key}] section"
    if kind in ("enum", "literal_error"):
        return key, f"{got(value)}; expected one of {err.get('ctx', {}).get('expected', '')}"
    if kind == "string_too_short":
        return key, f"must not be empty; write e.g. {top} = {example}"
    if kind in ("greater_than_equal", "greater_than"):
        return key, f"{got(value)}; must be {err['msg'].lower().removeprefix('input should be ')}"
    return key, f"{err['msg']} ({got(value)})"
