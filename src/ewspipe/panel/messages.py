"""The one format for input errors: source, column, problem, first offending rows, fix."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import PanelError

__all__ = ["EXCERPT_CHARS", "SHOW_ROWS", "excerpt", "name_list", "plain", "row_error"]

SHOW_ROWS = 5
EXCERPT_CHARS = 80
SHOW_NAMES = 20


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``text``: a huge cell must never be echoed in full."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\u2026 ({len(text):,} characters)"


def name_list(names: Iterable[object], limit: int = SHOW_NAMES) -> str:
    """The first ``limit`` names (each excerpted), comma-separated, with how many more."""
    items = [str(n) for n in names]
    shown = ", ".join(excerpt(n, 40) for n in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items):,} in all)"


def plain(value: object) -> str:
    """A value as the user wrote it (``5``, ``'x'``, ``<missing>``), not as a numpy repr."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "<missing>"
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "<missing>"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    return excerpt(repr(value))


def row_error(
    source: str,
    column: str | None,
    problem: str,
    fix: str,
    df: pd.DataFrame | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    show: list[str] | None = None,
) -> PanelError:
    """A PanelError naming the source, the column, the first rows where ``mask`` holds, a fix."""
    where = f"{source}: column '{excerpt(column, 40)}'" if column else source
    parts = [f"{where}: {problem}"]
    if df is not None and mask is not None and mask.any():
        parts.append("  first offending rows (data row = 1-based, header excluded):")
        shown = [c for c in dict.fromkeys(show or [column or ""]) if c in df.columns]
        idx = np.flatnonzero(mask)
        for i in idx[:SHOW_ROWS]:
            values = " ".join(f"{excerpt(c, 40)}={plain(df[c].iloc[i])}" for c in shown)
            parts.append(f"    data row {i + 1}: {values}")
        if len(idx) > SHOW_ROWS:
            parts.append(f"    ... and {len(idx) - SHOW_ROWS} more")
    parts.append(f"  Fix: {fix}")
    return PanelError("\n".join(parts))
