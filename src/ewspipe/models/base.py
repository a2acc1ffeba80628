"""The forecaster protocol (scikit-learn style) shared by baselines and learned models.

``__init__`` only stores hyperparameters; ``fit`` validates and learns, returns ``self`` and
leaves learned state in attributes ending in ``_``; ``predict`` uses only that state and data
of months <= origin. ``get_params``/``clone`` rebuild an unfitted copy from parameters alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from ewspipe.features.design import Design
from ewspipe.models.forecast import Forecast

__all__ = ["BaseForecaster", "Forecaster", "NotFittedError", "clone"]


class NotFittedError(ValueError, AttributeError):
    """predict() was called before fit()."""


@runtime_checkable
class Forecaster(Protocol):
    def fit(self, design: Design, *, train_last: int) -> Self: ...

    def predict(self, design: Design, *, origin: int, steps: Sequence[int]) -> Forecast: ...

    def get_params(self) -> dict[str, Any]: ...


class BaseForecaster:
    """get_params / set_params / repr from the ``__init__`` signature, as in scikit-learn."""

    #: learns from the model file's ``features`` (a model of it needs at least one)
    needs_features: ClassVar[bool] = False

    @classmethod
    def _parameters(cls) -> list[inspect.Parameter]:
        """The hyperparameters of ``__init__``; where it passes ``**kwargs`` on to its base
        class, that class's parameters follow (shared ones are declared once, in the base)."""
        found: list[inspect.Parameter] = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
            found += [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return found

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p.name for p in cls._parameters()]

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls._parameters() if p.default is not p.empty}

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"unknown hyperparameter {key!r} for {type(self).__name__}; "
                    f"valid: {', '.join(sorted(valid))}"
                )
            setattr(self, key, value)
        return self

    def first_design_month(self, train_last: int) -> int | None:
        """The earliest month whose design rows ``fit(train_last=...)`` and ``predict`` read;
        None: any. A run builds the design from that month on (``build_design(first_month=)``),
        so a model trained on a window does not pay for a design of the whole history."""
        return None

    def first_predict_month(self, origin: int) -> int | None:
        """The earliest month whose design rows ``predict(origin=...)`` reads; None: any. A
        forecast from one origin builds its design from there on. By default what a fit up
        to ``origin`` reads."""
        return self.first_design_month(origin)

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def clone(model: BaseForecaster) -> BaseForecaster:
    """An unfitted copy with the same hyperparameters."""
    return type(model)(**model.get_params())
