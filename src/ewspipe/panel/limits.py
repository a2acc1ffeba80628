"""Input limits: what a file may cost us before we refuse it, and what a count may plausibly be.

A small hostile or broken file must not cost gigabytes or minutes: the limits are checked
before the table is parsed (header, line lengths, decompressed size) and cheaply (a streamed
pass in constant memory, or the Parquet footer). The plausibility bound refuses counts no
conflict produces in one unit-month or one event (the largest real country-month in the VIEWS
cm data is about 125,000 deaths). Every limit is a ``[data]`` setting (README "Input limits").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputLimits"]


@dataclass(frozen=True)
class InputLimits:
    """The input limits of one import; defaults are the documented ``[data]`` defaults."""

    max_columns: int = 1_000
    max_line_bytes: int = 1 << 20
    max_decompressed_bytes: int = 2 << 30
    max_deaths_per_row: int = 1_000_000
    min_months: int = 1
    allow_short: bool = False

    def describe(self, key: str) -> str:
        """``[data] key = value``: how a message names the setting that allows more."""
        return f"[data] {key} = {getattr(self, key)}"
