"""The feature-expression language of model files: parse, name canonically, check.

Grammar (whitespace anywhere between tokens)::

    expr   := column | name "(" [arg ("," arg)*] ")"
    arg    := expr | number | param "=" number
    column := identifier            (any panel column: a count or a covariate)
    number := [+-] digits [. digits] [e [+-] digits]

A transform takes its expression inputs first, then numbers (see
:func:`ewspipe.features.transforms.names`). The canonical name writes every node as
``fn(input, p1, p2)`` with ``", "`` separators, whole numbers without a decimal point and
trailing default parameters left out, so ``decay( ged_sb,12.0, threshold=1 )`` is
``decay(ged_sb, 12)``: the same feature written twice is one column, computed once.

Limits (checked before parsing, so a hostile model file cannot exhaust the stack or memory):
an expression holds at most :data:`MAX_EXPRESSION_LENGTH` characters and nests calls at most
:data:`MAX_NESTING` deep; a parameter counted in months (a lag, a window, a half-life) is at
most :data:`~ewspipe.features.transforms.MAX_MONTHS`. :func:`check_lookback` also bounds how far
back a feature reads by the training window of a partition.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from ewspipe.errors import SpecError
from ewspipe.features.transforms import (
    MAX_MONTHS,
    Param,
    Transform,
    did_you_mean,
    get_transform,
    names,
)
from ewspipe.panel.schema import Level

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_MONTHS",
    "MAX_NESTING",
    "Call",
    "Column",
    "Expr",
    "canonical_name",
    "check_expression",
    "check_lookback",
    "lookback",
    "parse_expression",
    "parse_features",
    "walk",
]

Number = int | float

#: Characters in one feature expression; the longest real feature is under 60.
MAX_EXPRESSION_LENGTH = 1000
#: Calls nested inside one another (``splag(lag(msum(log1p(ged_sb), 12), 1))`` nests 4).
MAX_NESTING = 20


@dataclass(frozen=True)
class Column:
    """A panel column used as it is."""

    column: str

    @property
    def name(self) -> str:
        return self.column


@dataclass(frozen=True)
class Call:
    """A transform applied to expression inputs with numeric parameters (defaults filled in)."""

    transform: str
    inputs: tuple[Expr, ...]
    params: tuple[Number, ...] = field(default=())

    @property
    def name(self) -> str:
        spec = get_transform(self.transform)
        shown = list(self.params)
        while shown and spec.params[len(shown) - 1].default == shown[-1]:
            shown.pop()
        args = [i.name for i in self.inputs] + [_fmt(p) for p in shown]
        return f"{self.transform}({', '.join(args)})"


Expr = Column | Call


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, inputs before the node that uses them."""
    if isinstance(expr, Call):
        for child in expr.inputs:
            yield from walk(child)
    yield expr


def parse_expression(text: str) -> Expr:
    """Parse one feature expression.

    Raises:
        SpecError: naming the expression, the position, what was expected and the fix
            (unknown transforms list the valid names with a "did you mean").
    """
    if not isinstance(text, str):
        raise SpecError(f"feature {text!r}: expected a string such as 'lag(ged_sb, 1)', got "
                        f"{type(text).__name__}")
    _check_size(text)
    return _Parser(text).parse()


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def _check_size(text: str) -> None:
    """Refuse an expression too long or nested too deep, by scanning it once: the parser
    recurses per nesting level and would hit Python's recursion limit first."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SpecError(
            f"feature {_excerpt(text)}: {len(text)} characters, more than the "
            f"{MAX_EXPRESSION_LENGTH} a feature expression may have. Fix: write a shorter "
            "expression (a feature is a transform of a column, e.g. mmean(ged_sb, 12))")
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_NESTING:
        raise SpecError(
            f"feature {text!r}: calls nested {deepest} deep, more than the "
            f"{MAX_NESTING} a feature expression may nest. Fix: nest fewer transforms "
            "(e.g. splag(lag(ged_sb, 1)) nests 2)")


def lookback(expr: Expr) -> int:
    """How many months before t the value of ``expr`` at t reads: lag k reads k back, a
    w-month window w - 1, and nested transforms add up (``lag(msum(x, 12), 1)``: 12)."""
    if isinstance(expr, Column):
        return 0
    below = max((lookback(child) for child in expr.inputs), default=0)
    reach = get_transform(expr.transform).reach
    return below + (reach(expr.params) if reach is not None else 0)


def check_lookback(expr: Expr, *, first: int, last: int, run_type: str) -> None:
    """Refuse a feature that reads further back than a training window ``first..last``
    (the ``run_type`` partition's) allows: it would be missing for every training row.

    A step-1 training pair takes features at t and the target at t + 1 <= ``last``, so the
    feature must be defined at some month <= last - 1, i.e. read back at most
    ``last - 1 - first`` months.

    Raises:
        SpecError: naming the feature, how far it reads, the window and the fix.
    """
    months = lookback(expr)
    allowed = last - 1 - first
    if months <= allowed:
        return
    raise SpecError(
        f"feature {expr.name!r} reads {months} months back, but the {run_type} run trains on "
        f"months {first}..{last} ({last - first + 1} months), so the feature would be missing "
        f"for every training row; a feature may read at most {max(allowed, 0)} months back "
        "here. Fix: shorten its lags and windows (e.g. lag(ged_sb, 12), mmean(ged_sb, 12)), "
        "or lengthen the training windows in ewspipe.toml [partitions]")


def canonical_name(text: str) -> str:
    """The canonical name of a feature expression (see the module docstring)."""
    return parse_expression(text).name


def parse_features(features: Sequence[str]) -> tuple[Expr, ...]:
    """Parse a model's feature list; a feature written twice (in any spelling) is kept once,
    at its first position."""
    if isinstance(features, str):
        raise SpecError(f"features must be a list of expressions, got the string {features!r}; "
                        f"write features = [{features!r}]")
    seen: dict[str, Expr] = {}
    for text in features:
        expr = parse_expression(text)
        seen.setdefault(expr.name, expr)
    return tuple(seen.values())


def check_expression(
    expr: Expr, *, level: Level, columns: Collection[str] | None = None
) -> None:
    """Check that ``expr`` can be computed on a ``level`` panel holding ``columns``.

    ``columns=None`` checks the level only (a model file read without its panel).

    Raises:
        SpecError: a transform used at the wrong level, or a column the panel lacks.
    """
    feature = expr.name
    available = sorted(columns) if columns is not None else []
    for node in walk(expr):
        if isinstance(node, Column):
            if columns is not None and node.column not in columns:
                raise SpecError(
                    f"feature {feature!r}: column {node.column!r} is not in the {level.value} "
                    f"panel{did_you_mean(node.column, available)}; available columns: "
                    f"{', '.join(available)}. Fix: correct the name, or add the column to the "
                    "panel (static covariates are panel columns too)"
                )
            continue
        spec = get_transform(node.transform)
        if level not in spec.levels:
            valid = "/".join(sorted(lv.value for lv in spec.levels))
            raise SpecError(
                f"feature {feature!r}: {spec.name} works on {valid} panels only ({spec.summary})"
                f"; this panel is {level.value}. Fix: remove {node.name!r} from the "
                f"{level.value} model, or move it to a {valid} model"
            )
        for needed in spec.needs:
            if columns is not None and needed not in columns:
                raise SpecError(
                    f"feature {feature!r}: {spec.name} needs the {level.value} panel's "
                    f"{needed!r} column; the panel has: {', '.join(available)}. Fix: import the "
                    f"panel with its {needed!r} column (the pgm source files carry it)"
                )


# --------------------------------------------------------------------------- parser

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[(),=]))"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | op | end
    text: str
    pos: int


@dataclass(frozen=True)
class _Arg:
    value: Expr | float
    pos: int
    text: str
    keyword: str | None = None


def _fmt(value: Number) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Parser:
    """Recursive descent over the tokens; binds each call to its transform's signature."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize()
        self.i = 0

    def parse(self) -> Expr:
        if self.tokens[0].kind == "end":
            raise self._error(0, "empty expression", "write a column name such as ged_sb or a "
                              "transform such as lag(ged_sb, 1)")
        expr = self._expr()
        tok = self.tokens[self.i]
        if tok.kind != "end":
            raise self._error(tok.pos, f"unexpected {tok.text!r} after the end of the expression",
                              "remove it, or combine expressions by nesting, e.g. "
                              "splag(lag(ged_sb, 1))")
        return expr

    def _error(self, pos: int, problem: str, fix: str) -> SpecError:
        caret = " " * pos + "^"
        return SpecError(f"feature {self.text!r}: {problem} (position {pos})\n"
                         f"    {self.text}\n    {caret}\n  Fix: {fix}")

    def _tokenize(self) -> list[_Token]:
        tokens, pos, text = [], 0, self.text
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise self._error(bad, f"unexpected character {text[bad]!r}",
                                  "names are letters, digits and _; numbers like 12 or 0.5; "
                                  "arguments are separated by commas")
            start = m.start(m.lastgroup)
            tokens.append(_Token(m.lastgroup, m.group(m.lastgroup), start))
            pos = m.end()
        tokens.append(_Token("end", "end of expression", len(text)))
        return tokens

    def _next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _peek(self, text: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "op" and tok.text == text

    def _expr(self) -> Expr:
        tok = self._next()
        if tok.kind != "name":
            what = "the end" if tok.kind == "end" else repr(tok.text)
            raise self._error(tok.pos, f"expected a column or a transform, got {what}",
                              "write a column name such as ged_sb or a transform such as "
                              "lag(ged_sb, 1)")
        if not self._peek("("):
            return Column(tok.text)
        if tok.text not in names():
            raise self._error(tok.pos, f"unknown transform {tok.text!r}"
                              f"{did_you_mean(tok.text, names())}",
                              f"use one of {', '.join(names())}; for a column, drop the "
                              "parentheses")
        spec = get_transform(tok.text)
        self._next()  # "("
        args = self._args(spec)
        return self._bind(spec, tok.pos, args)

    def _args(self, spec: Transform) -> list[_Arg]:
        args: list[_Arg] = []
        if self._peek(")"):
            self._next()
            return args
        while True:
            args.append(self._arg())
            tok = self._next()
            if tok.kind == "op" and tok.text == ")":
                return args
            if not (tok.kind == "op" and tok.text == ","):
                got = "the end" if tok.kind == "end" else repr(tok.text)
                raise self._error(tok.pos, f"expected ',' or ')' in {spec.name}(...), got {got}",
                                  f"write {spec.signature}, e.g. {spec.example}")

    def _arg(self) -> _Arg:
        tok = self.tokens[self.i]
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else tok
        if tok.kind == "name" and nxt.kind == "op" and nxt.text == "=":
            self.i += 2
            value = self._next()
            if value.kind != "number":
                raise self._error(value.pos, f"{tok.text}= needs a number, got {value.text!r}",
                                  f"write {tok.text}=<number>")
            return _Arg(self._number(value), value.pos, value.text, keyword=tok.text)
        if tok.kind == "number":
            self.i += 1
            return _Arg(self._number(tok), tok.pos, tok.text)
        start = tok.pos
        expr = self._expr()
        return _Arg(expr, start, expr.name)

    def _number(self, tok: _Token) -> float:
        value = float(tok.text)
        if not math.isfinite(value):
            raise self._error(tok.pos, f"number {tok.text} is not finite", "use a finite number")
        return value

    def _bind(self, spec: Transform, pos: int, args: list[_Arg]) -> Call:
        slots = ["x"] * spec.inputs + [p.name for p in spec.params]
        positional = [a for a in args if a.keyword is None]
        fix = f"write {spec.signature}, e.g. {spec.example}"
        for a, b in itertools.pairwise(args):
            if a.keyword is not None and b.keyword is None:
                raise self._error(b.pos, "positional argument after a keyword argument", fix)
        if len(positional) > len(slots) or len(positional) < spec.inputs:
            raise self._error(pos, f"{spec.name} takes {_arity(spec)}, {spec.signature}; got "
                              f"{len(args)}", fix)
        bound: dict[str, _Arg] = dict(zip(slots, positional, strict=False))
        for a in args:
            if a.keyword is None:
                continue
            if a.keyword not in slots[spec.inputs:]:
                known = [p.name for p in spec.params]
                raise self._error(a.pos, f"{spec.name} has no parameter {a.keyword!r}"
                                  f"{did_you_mean(a.keyword, known)}", fix)
            if a.keyword in bound:
                raise self._error(a.pos, f"parameter {a.keyword!r} given twice", fix)
            bound[a.keyword] = a
        inputs = tuple(self._input(spec, i, positional[i]) for i in range(spec.inputs))
        params = []
        for k, param in enumerate(spec.params):
            arg = bound.get(param.name)
            if arg is None:
                if param.default is None:
                    raise self._error(pos, f"{spec.name} takes {_arity(spec)}, {spec.signature}; "
                                      f"got {len(args)} (missing {param.name})", fix)
                params.append(param.kind(param.default))
                continue
            params.append(self._param(spec, spec.inputs + k, param, arg, fix))
        return Call(spec.name, inputs, tuple(params))

    def _input(self, spec: Transform, index: int, arg: _Arg) -> Expr:
        if not isinstance(arg.value, Column | Call):
            raise self._error(arg.pos, f"argument {index + 1} of {spec.name} (x) must be a "
                              f"column or a transform, got the number {arg.text}",
                              f"write {spec.signature}, e.g. {spec.example}")
        if spec.column_only and not isinstance(arg.value, Column):
            raise self._error(arg.pos, f"{spec.name} takes a column name, got {arg.text!r}",
                              f"write {spec.example}")
        return arg.value

    def _param(self, spec: Transform, index: int, param: Param, arg: _Arg, fix: str) -> Number:
        where = f"argument {index + 1} of {spec.name} ({param.name})"
        if not isinstance(arg.value, float):
            raise self._error(arg.pos, f"{where} must be a number, got {arg.text!r}", fix)
        value = arg.value
        if param.kind is int and not value.is_integer():
            raise self._error(arg.pos, f"{where} must be a whole number, got {arg.text}", fix)
        if param.low is not None and (value <= param.low if param.low_open else value < param.low):
            sign = ">" if param.low_open else ">="
            why = f" ({param.why})" if param.why else ""
            raise self._error(arg.pos, f"{where} must be {sign} {_fmt(param.low)}, got "
                              f"{arg.text}{why}", fix)
        if param.high is not None and value > param.high:
            unit = " months" if param.months else ""
            raise self._error(arg.pos, f"{where} must be <= {_fmt(param.high)}{unit}, got "
                              f"{arg.text}" + (" (100 years: no panel has that much history)"
                                               if param.high == MAX_MONTHS else ""), fix)
        return int(value) if param.kind is int else value


def _arity(spec: Transform) -> str:
    total = spec.inputs + len(spec.params)
    low = spec.n_required

    def plural(n: int) -> str:
        return f"{n} argument" + ("" if n == 1 else "s")

    return plural(total) if low == total else f"{low} to {plural(total)}"

