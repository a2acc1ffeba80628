"""Rank stability over backtest windows: is a model good on every window, or on one?

A model is chosen on several windows so that the choice is not tuned to one of them; this
summarises its score per window into the mean, the worst window, and its rank among the
models scored on each window (1 = best; ties share the better rank). A model that ranks
first on average but last somewhere is a model to distrust.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Stability", "rank_stability"]


@dataclass(frozen=True)
class Stability:
    """One model's scores over the windows (``None``: not scored there)."""

    model: str
    scores: dict[str, float | None]
    ranks: dict[str, int | None]
    mean: float | None  # over the windows it was scored on
    worst: float | None
    worst_window: str | None
    mean_rank: float | None
    worst_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def rank_stability(
    scores: Mapping[str, Mapping[str, float | None]],
    windows: list[str] | None = None,
    *,
    direction: Literal["minimize", "maximize"] = "minimize",
) -> dict[str, Stability]:
    """Model -> its :class:`Stability`, from ``scores`` (model -> window -> value), in the
    order of ``scores``; ``windows`` default to every window any model was scored on."""
    if windows is None:
        windows = sorted({w for by_window in scores.values() for w in by_window})
    sign = 1.0 if direction == "minimize" else -1.0
    ranks: dict[str, dict[str, int | None]] = {m: {} for m in scores}
    for w in windows:
        scored = {m: sign * float(s[w]) for m, s in scores.items()  # type: ignore[arg-type]
                  if _finite(s.get(w))}
        for m in scores:
            ranks[m][w] = (1 + sum(v < scored[m] for v in scored.values())
                           if m in scored else None)
    out: dict[str, Stability] = {}
    for m, by_window in scores.items():
        values = {w: float(v) for w in windows  # type: ignore[arg-type]
                  if _finite(v := by_window.get(w))}
        rks = [r for r in ranks[m].values() if r is not None]
        worst_window = (max(values, key=lambda w: sign * values[w]) if values else None)
        out[m] = Stability(
            model=m, scores={w: by_window.get(w) for w in windows}, ranks=ranks[m],
            mean=sum(values.values()) / len(values) if values else None,
            worst=values[worst_window] if worst_window is not None else None,
            worst_window=worst_window,
            mean_rank=sum(rks) / len(rks) if rks else None,
            worst_rank=max(rks) if rks else None)
    return out
