"""The feature-expression language: grammar, canonical names, dedup and every error message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewspipe.errors import InputError, SpecError
from ewspipe.features.expressions import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING,
    Call,
    Column,
    canonical_name,
    check_expression,
    check_lookback,
    lookback,
    parse_expression,
    parse_features,
    walk,
)
from ewspipe.features.transforms import get_transform, names
from ewspipe.panel.schema import Level

PGM_COLUMNS = ["month_id", "priogrid_gid", "ged_sb", "country_id"]
CM_COLUMNS = ["month_id", "country_id", "ged_sb", "ged_ns"]


# --------------------------------------------------------------------------- grammar


def test_bare_column_and_nested_calls():
    assert parse_expression("ged_sb") == Column("ged_sb")
    expr = parse_expression("splag(msum(ged_sb, 12))")
    assert expr == Call("splag", (Call("msum", (Column("ged_sb"),), (12,)),))
    assert [n.name for n in walk(expr)] == ["ged_sb", "msum(ged_sb, 12)", "splag(msum(ged_sb, 12))"]


def test_parameters_are_typed_and_defaults_filled():
    lag = parse_expression("lag(ged_sb, 3)")
    assert lag.params == (3,) and isinstance(lag.params[0], int)
    decay = parse_expression("decay(ged_sb, 12)")
    assert decay.params == (12.0, 1.0)
    assert parse_expression("decay(ged_sb, halflife=12, threshold=5)").params == (12.0, 5.0)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("  msum( ged_sb ,12 ) ", "msum(ged_sb, 12)"),
        ("lag(ged_sb,1.0)", "lag(ged_sb, 1)"),
        ("decay(ged_sb, 12.0, threshold=1)", "decay(ged_sb, 12)"),
        ("decay(ged_sb,12,1.0)", "decay(ged_sb, 12)"),
        ("decay(ged_sb, 12, 5)", "decay(ged_sb, 12, 5)"),
        ("decay(ged_sb, 0.5)", "decay(ged_sb, 0.5)"),
        ("time_since(ged_sb, 2.5e1)", "time_since(ged_sb, 25)"),
        ("splag( lag(ged_sb,1) )", "splag(lag(ged_sb, 1))"),
        ("lat( )", "lat()"),
        ("static(pop)", "static(pop)"),
    ],
)
def test_canonical_names(text, name):
    assert canonical_name(text) == name
    assert canonical_name(name) == name  # canonical names are fixed points


def test_same_feature_written_twice_is_kept_once_in_first_position():
    exprs = parse_features(["msum(ged_sb, 12)", "lag(ged_sb,1)", "msum( ged_sb,12 )",
                            "decay(ged_sb, 12, 1)", "decay(ged_sb, 12)"])
    assert [e.name for e in exprs] == ["msum(ged_sb, 12)", "lag(ged_sb, 1)", "decay(ged_sb, 12)"]


def test_column_named_like_a_transform_is_a_column():
    assert parse_expression("lag") == Column("lag")


_leaf = st.sampled_from(["ged_sb", "ged_ns", "pop"])


def _spell(draw_space: str, name: str, args: list[str]) -> str:
    sep = "," + draw_space
    return f"{name}({draw_space}{sep.join(args)}{draw_space})"


@st.composite
def _expressions(draw, depth: int = 0):
    if depth >= 3 or draw(st.booleans()):
        return draw(_leaf)
    inner = draw(_expressions(depth + 1))
    space = draw(st.sampled_from(["", " ", "  "]))
    kind = draw(st.sampled_from(["lag", "msum", "log1p", "decay"]))
    if kind == "lag":
        return _spell(space, "lag", [inner, str(draw(st.integers(0, 24)))])
    if kind == "msum":
        return _spell(space, "msum", [inner, f"{draw(st.integers(1, 36))}.0"])
    if kind == "log1p":
        return _spell(space, "log1p", [inner])
    return _spell(space, "decay", [inner, str(draw(st.integers(1, 24)))])


@given(_expressions())
def test_canonical_name_parses_back_to_the_same_expression(text):
    expr = parse_expression(text)
    assert parse_expression(expr.name) == expr
    assert " " not in expr.name.replace(", ", "")


# --------------------------------------------------------------------------- parse errors


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_expression(text)
    message = str(info.value)
    assert f"feature {text!r}" in message  # every parse error names the expression
    return message


def test_unknown_transform_names_position_suggestion_and_valid_names():
    message = _error("lag(msun(ged_sb, 3), 1)")
    assert "unknown transform 'msun' (did you mean 'msum'?)" in message
    assert "(position 4)" in message
    assert "\n        ^" in message  # caret under the name
    for name in names():
        assert name in message


def test_spec_error_is_an_input_error_with_exit_code_2():
    with pytest.raises(InputError) as info:
        parse_expression("lagg(ged_sb, 1)")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lag(ged_sb)", "lag takes 2 arguments, lag(x, k); got 1 (missing k)"),
        ("lag(ged_sb, 1, 2)", "lag takes 2 arguments, lag(x, k); got 3"),
        ("decay(ged_sb)", "decay takes 2 to 3 arguments, decay(x, halflife, threshold=1)"),
        ("log1p()", "log1p takes 1 argument, log1p(x); got 0"),
        ("lat(ged_sb)", "lat takes 0 arguments, lat(); got 1"),
        ("spell(ged_sb, 1, 2)", "spell takes 1 to 2 arguments, spell(x, threshold=1); got 3"),
    ],
)
def test_bad_arity(text, expected):
    message = _error(text)
    assert expected in message
    assert "Fix: write" in message


@pytest.mark.parametrize(
    ("text", "expected", "position"),
    [
        ("lag(ged_sb, ged_ns)", "argument 2 of lag (k) must be a number, got 'ged_ns'", 12),
        ("lag(ged_sb, lag(ged_ns, 1))", "argument 2 of lag (k) must be a number", 12),
        ("msum(ged_sb, 1.5)", "argument 2 of msum (w) must be a whole number, got 1.5", 13),
        ("lag(3, 1)", "argument 1 of lag (x) must be a column or a transform, got the number 3", 4),
        ("decay(ged_sb, halflife=x)", "halflife= needs a number, got 'x'", 23),
        ("spell(ged_sb, nan)", "argument 2 of spell (threshold) must be a number, got 'nan'",
         14),
    ],
)
def test_non_numeric_or_misplaced_argument(text, expected, position):
    message = _error(text)
    assert expected in message
    assert f"(position {position})" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lag(ged_sb, -1)", "argument 2 of lag (k) must be >= 0, got -1 (a negative lag would "
         "read the future)"),
        ("msum(ged_sb, 0)", "argument 2 of msum (w) must be >= 1, got 0"),
        ("decay(ged_sb, 0)", "argument 2 of decay (halflife) must be > 0, got 0"),
        ("lag(ged_sb, 1000000000)", "argument 2 of lag (k) must be <= 1200 months, got "
         "1000000000"),
        ("mmean(ged_sb, 1e12)", "argument 2 of mmean (w) must be <= 1200 months, got 1e12"),
        ("decay(ged_sb, 1201)", "argument 2 of decay (halflife) must be <= 1200 months"),
        ("mmean(ged_sb, 2.5)", "argument 2 of mmean (w) must be a whole number, got 2.5"),
    ],
)
def test_parameter_bounds(text, expected):
    assert expected in _error(text)


def test_the_month_cap_itself_is_allowed():
    assert parse_expression("lag(msum(ged_sb, 1200), 1200)").params == (1200,)


@pytest.mark.parametrize(("text", "months"), [
    ("ged_sb", 0), ("lag(ged_sb, 3)", 3), ("msum(ged_sb, 12)", 11), ("mmean(ged_sb, 1)", 0),
    ("lag(msum(ged_sb, 12), 1)", 12), ("splag(lag(ged_sb, 2))", 2), ("decay(ged_sb, 600)", 0),
    ("time_since(lag(ged_sb, 5), 1)", 5), ("log1p(mmean(lag(ged_sb, 1), 36))", 36),
])
def test_lookback_adds_up_through_nesting(text, months):
    assert lookback(parse_expression(text)) == months


def test_lookback_is_bounded_by_the_training_window():
    check_lookback(parse_expression("lag(ged_sb, 322)"), first=121, last=444,
                   run_type="calibration")  # month 443 still has it
    with pytest.raises(SpecError) as exc:
        check_lookback(parse_expression("lag(ged_sb, 323)"), first=121, last=444,
                       run_type="calibration")
    message = str(exc.value)
    assert "feature 'lag(ged_sb, 323)' reads 323 months back" in message
    assert "calibration run trains on months 121..444 (324 months)" in message
    assert "at most 322 months back" in message and "Fix:" in message


def test_expression_size_limits_are_checked_before_parsing():
    deep = "log1p(" * 10_000 + "ged_sb" + ")" * 10_000
    with pytest.raises(SpecError) as exc:
        parse_expression(deep)
    assert f"{len(deep)} characters, more than the {MAX_EXPRESSION_LENGTH}" in str(exc.value)
    assert len(str(exc.value)) < 500  # quoted as an excerpt
    limit = "log1p(" * MAX_NESTING + "ged_sb" + ")" * MAX_NESTING
    assert parse_expression(limit).name == limit
    over = "log1p(" + limit + ")"
    assert f"nested {MAX_NESTING + 1} deep, more than the {MAX_NESTING}" in _error(over)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty expression"),
        ("lag(ged_sb 1)", "expected ',' or ')' in lag(...), got '1' (position 11)"),
        ("lag(ged_sb, 1", "expected ',' or ')' in lag(...), got the end (position 13)"),
        ("lag(ged_sb, 1) x", "unexpected 'x' after the end of the expression (position 15)"),
        ("ged_sb - 1", "unexpected character '-' (position 7)"),
        ("lag(, 1)", "expected a column or a transform, got ','"),
        ("decay(ged_sb, 12, thresh=2)", "decay has no parameter 'thresh' (did you mean "
         "'threshold'?)"),
        ("decay(ged_sb, halflife=12, 1)", "positional argument after a keyword argument"),
        ("decay(ged_sb, 12, halflife=3)", "parameter 'halflife' given twice"),
        ("static(lag(pop, 1))", "static takes a column name, got 'lag(pop, 1)'"),
        ("lag(ged_sb, 1e999)", "number 1e999 is not finite"),
    ],
)
def test_syntax_errors(text, expected):
    assert expected in _error(text)


def test_non_string_feature():
    with pytest.raises(SpecError, match="expected a string such as 'lag\\(ged_sb, 1\\)', got int"):
        parse_expression(12)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="features must be a list"):
        parse_features("lag(ged_sb, 1)")


# --------------------------------------------------------------------------- level and columns


@pytest.mark.parametrize("text", ["splag(ged_sb)", "lag(country_sum(ged_sb), 1)", "lat()"])
def test_pgm_transforms_refused_at_cm(text):
    expr = parse_expression(text)
    with pytest.raises(SpecError) as info:
        check_expression(expr, level=Level.CM, columns=CM_COLUMNS)
    message = str(info.value)
    assert f"feature {expr.name!r}" in message
    assert "works on pgm panels only" in message
    assert "this panel is cm" in message
    assert "Fix: remove" in message and "move it to a pgm model" in message


def test_level_only_check_without_columns():
    check_expression(parse_expression("splag(nonexistent)"), level=Level.PGM)
    with pytest.raises(SpecError, match="pgm panels only"):
        check_expression(parse_expression("splag(ged_sb)"), level=Level.CM)


def test_unknown_column_lists_available_columns_and_suggests():
    expr = parse_expression("msum(gde_sb, 12)")
    with pytest.raises(SpecError) as info:
        check_expression(expr, level=Level.CM, columns=CM_COLUMNS)
    message = str(info.value)
    assert "feature 'msum(gde_sb, 12)': column 'gde_sb' is not in the cm panel" in message
    assert "(did you mean 'ged_sb'" in message
    assert "available columns: country_id, ged_ns, ged_sb, month_id" in message
    assert "Fix: correct the name" in message


def test_country_aggregate_needs_country_id_column():
    expr = parse_expression("country_sum(ged_sb)")
    check_expression(expr, level=Level.PGM, columns=PGM_COLUMNS)
    with pytest.raises(SpecError) as info:
        check_expression(expr, level=Level.PGM, columns=["month_id", "priogrid_gid", "ged_sb"])
    message = str(info.value)
    assert "country_sum needs the pgm panel's 'country_id' column" in message
    assert "the panel has: ged_sb, month_id, priogrid_gid" in message


def test_registry_lists_every_transform_with_a_working_example():
    listed = names()
    assert listed == sorted(listed)
    assert {"lag", "msum", "mmean", "time_since", "decay", "log1p", "splag", "country_sum",
            "country_mean", "static", "lat", "lon"} <= set(listed)
    for name in listed:
        spec = get_transform(name)
        assert parse_expression(spec.example).transform == name
    with pytest.raises(SpecError, match=r"unknown transform 'mmaen' \(did you mean 'mmean'\?\)"):
        get_transform("mmaen")
