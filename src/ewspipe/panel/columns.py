"""Column coercion at the input boundary: numbers and integers, or an error naming the rows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.panel.messages import row_error

__all__ = ["integers", "numbers", "refuse_text_storage"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_INT64_MAX = np.iinfo(np.int64).max
_INT64_LIMIT = 2.0**63


def numbers(df: pd.DataFrame, column: str, source: str, *, fix: str, show: list[str]) -> FloatArray:
    """The column as float64 (NaN = missing); text and booleans are errors naming the rows."""
    col = df[column]
    if pd.api.types.is_bool_dtype(col):
        raise row_error(source, column, "holds booleans (true/false), expected numbers", fix)
    kind = ("dates" if pd.api.types.is_datetime64_any_dtype(col) else
            "durations" if pd.api.types.is_timedelta64_dtype(col) else
            "complex numbers" if pd.api.types.is_complex_dtype(col) else None)
    if kind is not None:  # as numbers they would be nanoseconds, or lose the imaginary part
        raise row_error(source, column, f"holds {kind} ({col.dtype}), expected whole numbers",
                        fix)
    if not pd.api.types.is_numeric_dtype(col):
        converted = pd.to_numeric(col, errors="coerce")
        text = (converted.isna() & col.notna()).to_numpy()
        if text.any():
            raise row_error(
                source, column, f"{int(text.sum())} rows hold text where a number is expected",
                "replace the text with numbers (or leave the cell empty for a missing value); "
                + fix, df, text, show,
            )
        col = converted
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def integers(
    df: pd.DataFrame,
    column: str,
    source: str,
    *,
    fix: str,
    show: list[str],
    allow_missing: bool = False,
) -> tuple[IntArray, BoolArray]:
    """Integer values and the missing mask; missing (unless allowed), infinite or fractional
    values are errors. Integer columns without missing values take a copy-free fast path."""
    col = df[column]
    wraps = pd.api.types.is_unsigned_integer_dtype(col) and len(col) and col.max() > _INT64_MAX
    if pd.api.types.is_integer_dtype(col) and not pd.api.types.is_bool_dtype(col) \
            and not col.hasnans and not wraps:
        values = col.to_numpy(dtype=np.int64)
        return values, np.zeros(len(values), dtype=bool)
    arr = numbers(df, column, source, fix=fix, show=show)
    missing = np.isnan(arr)
    if missing.any() and not allow_missing:
        raise row_error(source, column, f"{int(missing.sum())} rows have no value", fix,
                        df, missing, show)
    inf = np.isinf(arr)
    if inf.any():
        raise row_error(source, column, f"{int(inf.sum())} rows are infinite", fix,
                        df, inf, show)
    filled = np.where(missing, 0.0, arr)
    huge = np.abs(filled) >= _INT64_LIMIT  # would wrap around to negative as int64
    if huge.any():
        raise row_error(source, column, f"{int(huge.sum())} rows are too large (beyond a 64-bit "
                        "integer, about 9.2e18)", fix, df, huge, show)
    frac = filled != np.floor(filled)
    if frac.any():
        raise row_error(source, column, f"{int(frac.sum())} rows hold non-integer numbers", fix,
                        df, frac, show)
    return filled.astype(np.int64), missing


def refuse_text_storage(df: pd.DataFrame, column: str, source: str) -> None:
    """Numbers stored as strings (a typed Parquet column) are refused: the writer lost the type.

    CSV cells are typed by the reader, so there a text column always holds real text, which
    :func:`numbers` names row by row."""
    col = df[column]
    if not (pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)):
        return
    values = col.dropna()
    if len(values) and not all(isinstance(v, str) for v in values.head(1000)):
        return  # mixed Python objects (e.g. huge ints): the number checks name them
    if pd.to_numeric(values, errors="coerce").isna().any():
        return  # real text in some cells: the number checks name the rows
    raise row_error(
        source, column,
        f"the numbers are stored as text (dtype {col.dtype}), not as integers",
        f"write the column as an integer type, e.g. in pandas "
        f"df['{column}'] = df['{column}'].astype('int64') before to_parquet (or fix the "
        "export's schema)")
