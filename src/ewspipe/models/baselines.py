"""Baselines: the yardsticks a forecasting model has to beat (DOMAIN.md section 3).

Every baseline follows the forecaster protocol: ``fit`` validates and learns nothing from the
data but the training cut-off, ``predict`` reads the target of months <= origin only (a window
ending at the origin) and repeats the same value for every step (conflictology draws fresh
samples per step). All computations are vectorised over units (``np.bincount`` by entity).

| algorithm       | hyperparameters (defaults)         | prediction for every step          |
|-----------------|------------------------------------|------------------------------------|
| ``zero``        | none                               | 0                                  |
| ``locf``        | none                               | y at the origin                    |
| ``average``     | ``w = 12``                         | mean of y over the last w months   |
| ``log_average`` | ``w = 12``                         | expm1(mean(log1p y)) over w months |
| ``conflictology``| ``w = 12, n_samples = 100, seed = 0`` | S draws from the last w months |

"The last w months" are months origin - w + 1 .. origin; a unit with fewer observed months
(new in the panel, or NaN targets) uses the ones it has. A unit of the entity set with no
observed target in its window is an error, never silently zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from ewspipe.features.design import Design
from ewspipe.models.base import BaseForecaster
from ewspipe.models.forecast import Forecast
from ewspipe.models.registry import register
from ewspipe.models.sampling import (
    DEFAULT_STEPS,
    Rule,
    assemble,
    blocked_draws,
    bootstrap_history,
    check_params,
    check_steps,
    check_train_last,
    entity_rows,
    integer,
)

__all__ = ["Average", "Conflictology", "Locf", "LogAverage", "Zero"]

_Array = npt.NDArray[np.float64]
_Steps = npt.NDArray[np.int64]
_Values = tuple[_Array, _Array | None]
_Sampler = Callable[[slice], _Values]


class _Baseline(BaseForecaster):
    """Shared protocol: fit records the cut-off, predict maps the origin window to values."""

    algorithm: ClassVar[str]
    _rules: ClassVar[dict[str, Rule]] = {}

    def __init__(self) -> None:
        pass  # no hyperparameters unless a subclass declares them

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate hyperparameters without data (for ``models check``).

        Returns:
            The complete params (defaults filled in).

        Raises:
            SpecError: an unknown key or a bad value, named with the value.
        """
        return check_params(cls.algorithm, params, cls.default_params(), cls._rules)

    def fit(self, design: Design, *, train_last: int) -> Self:
        """Validate hyperparameters and the cut-off; baselines learn nothing else."""
        self.check_params(self.get_params())
        check_train_last(design, train_last)
        self.train_last_ = int(train_last)
        return self

    def predict(
        self, design: Design, *, origin: int, steps: Sequence[int] = DEFAULT_STEPS
    ) -> Forecast:
        """Predict months origin + s for the units present at ``origin``.

        Args:
            design: rows of months <= origin are read; later rows are ignored.
            origin: last observed month; its units are the entity set.
            steps: steps to predict (default 1..36).

        Returns:
            A Forecast in raw counts.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: an origin absent from the design, bad steps, or a unit without any
                observed target in the window.
        """
        self._check_fitted()
        step_arr = check_steps(steps)
        rows = entity_rows(design, origin)
        point, samples = self._sampler(design, int(origin), rows, step_arr)(slice(None))
        return assemble(
            design, int(origin), step_arr, design.units[rows], point, samples,
            algorithm=self.algorithm,
        )

    def predict_units(
        self, design: Design, *, origin: int, step: int, units: Sequence[slice]
    ) -> Iterator[Forecast]:
        """The forecast of one step for each run of units (positions in the origin's sorted
        unit order), in turn: the rows of :meth:`predict` bit for bit, with the window read
        once and only one run's draws alive."""
        self._check_fitted()
        step_arr = check_steps([step])
        rows = entity_rows(design, origin)
        sample = self._sampler(design, int(origin), rows, step_arr)
        for part in units:
            point, samples = sample(part)
            yield assemble(design, int(origin), step_arr, design.units[rows][part], point,
                           samples, algorithm=self.algorithm)

    def _sampler(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Sampler:
        """A function from a run of the origin's units to their point (steps x units) and
        samples (steps x units x S, or None) in raw counts."""
        point, _ = self._values(design, origin, rows, steps)
        return lambda part: (point[:, part], None)

    def _values(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Values:
        """Point (steps x units) and samples (None: a point baseline) in raw counts."""
        raise NotImplementedError

    def first_design_month(self, train_last: int) -> int | None:
        """A run's origins are train_last or later, and predict reads the ``w`` months up to
        its origin (only the origin's rows without a window)."""
        window = getattr(self, "w", 1)
        return int(train_last) - int(window) + 1

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """Persistence hook (see :mod:`ewspipe.models.persistence`)."""
        return {"train_last_": self.train_last_}, {}, {}

    def _import_state(
        self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], estimators: Mapping[str, Any]
    ) -> None:
        self.train_last_ = int(meta["train_last_"])

    def _window(
        self, design: Design, origin: int, rows: slice, w: int
    ) -> tuple[_Array, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Observed targets of months origin-w+1..origin for the entity set.

        Returns:
            (values, entity index of each value, count per entity).
        """
        lo = int(np.searchsorted(design.months, origin - w + 1, side="left"))
        units = design.units[rows]
        win_units = design.units[lo:rows.stop]
        win_y = design.y[lo:rows.stop]
        pos = np.minimum(np.searchsorted(units, win_units), len(units) - 1)
        keep = (units[pos] == win_units) & np.isfinite(win_y)
        group = pos[keep]
        counts = np.bincount(group, minlength=len(units))
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            raise ValueError(
                f"{self.algorithm}: {len(empty)} units present at origin {origin} have no "
                f"observed target in months {origin - w + 1}..{origin} (first: "
                f"{design.unit_column} {int(units[empty[0]])}); a missing target must be "
                "resolved in the panel, not guessed by a baseline"
            )
        return win_y[keep], group, counts


def _per_step(values: _Array, n_steps: int) -> _Array:
    return np.broadcast_to(values, (n_steps, len(values)))


@register("zero")
class Zero(_Baseline):
    """Predicts 0 deaths for every unit and step."""

    algorithm = "zero"

    def _values(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Values:
        return np.zeros((len(steps), rows.stop - rows.start)), None


@register("locf")
class Locf(_Baseline):
    """Last observation carried forward: y at the origin for every step."""

    algorithm = "locf"

    def _values(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Values:
        values, group, counts = self._window(design, origin, rows, 1)
        return _per_step(np.bincount(group, values, len(counts)), len(steps)), None


class _WindowMean(_Baseline):
    """The mean of the target over the last ``w`` months up to the origin (default 12), taken
    on the scale :meth:`_to_scale` maps counts to and mapped back by :meth:`_from_scale`."""

    _rules: ClassVar[dict[str, Rule]] = {"w": integer(1)}

    def __init__(self, w: int = 12) -> None:
        self.w = w

    @staticmethod
    def _to_scale(values: _Array) -> _Array:
        return values

    @staticmethod
    def _from_scale(values: _Array) -> _Array:
        return values

    def _values(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Values:
        values, group, counts = self._window(design, origin, rows, self.w)
        mean = np.bincount(group, self._to_scale(values), len(counts)) / counts
        return _per_step(self._from_scale(mean), len(steps)), None


@register("average")
class Average(_WindowMean):
    """Mean of the target over the last ``w`` months up to the origin (default 12)."""

    algorithm = "average"


@register("log_average")
class LogAverage(_WindowMean):
    """expm1 of the mean of log1p(y) over the last ``w`` months (default 12): a geometric-type
    mean that one extreme month cannot dominate. Output in raw counts."""

    algorithm = "log_average"

    @staticmethod
    def _to_scale(values: _Array) -> _Array:
        return np.log1p(values)

    @staticmethod
    def _from_scale(values: _Array) -> _Array:
        return np.expm1(values)


@register("conflictology")
class Conflictology(_Baseline):
    """Probabilistic baseline: per step, ``n_samples`` draws with replacement from the unit's
    observed targets of the last ``w`` months; the point is the mean of the draws.

    Draws are seeded by (``seed``, origin, step, unit block): identical inputs give identical
    samples, and a unit's samples do not depend on which other steps or units were requested.
    """

    algorithm = "conflictology"
    _rules: ClassVar[dict[str, Rule]] = {
        "w": integer(1), "n_samples": integer(1), "seed": integer(0),
    }

    def __init__(self, w: int = 12, n_samples: int = 100, seed: int = 0) -> None:
        self.w = w
        self.n_samples = n_samples
        self.seed = seed

    def _sampler(self, design: Design, origin: int, rows: slice, steps: _Steps) -> _Sampler:
        values, group, counts = self._window(design, origin, rows, self.w)
        order = np.argsort(group, kind="stable")  # sorted once: each block's sort is linear
        values, group, n = values[order], group[order], len(counts)

        def draw(block: slice, rng: np.random.Generator) -> _Array:
            return bootstrap_history(values, group, n, self.n_samples, rng, groups=block)

        def sample(part: slice) -> _Values:
            samples = np.stack([
                blocked_draws(part, n, self.n_samples, draw, seed=self.seed, origin=origin,
                              step=int(s))
                for s in steps  # over steps (<= 36), each vectorised over units
            ])
            return samples.mean(axis=2), samples

        return sample
