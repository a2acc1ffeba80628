"""Algorithms by the names model files use: ``algorithm = "stepshifter"`` -> a class.

Modules that define algorithms register them with :func:`register`; importing
``ewspipe.models.registry`` imports those modules so the registry is complete.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ewspipe.errors import did_you_mean
from ewspipe.models.base import BaseForecaster

__all__ = ["create", "default_params", "get", "names", "register"]

T = TypeVar("T", bound=type[BaseForecaster])
_ALGORITHMS: dict[str, type[BaseForecaster]] = {}
_MODULES = ("ewspipe.models.baselines", "ewspipe.models.stepshifter", "ewspipe.models.hurdle")
_loaded = False


def register(name: str) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        if name in _ALGORITHMS and _ALGORITHMS[name] is not cls:
            raise ValueError(f"algorithm {name!r} registered twice")
        _ALGORITHMS[name] = cls
        return cls

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True


def names() -> list[str]:
    _load()
    return sorted(_ALGORITHMS)


def get(name: str) -> type[BaseForecaster]:
    _load()
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(names())}."
                         f"{did_you_mean(name, _ALGORITHMS)}")
    return _ALGORITHMS[name]


def default_params(name: str) -> dict[str, Any]:
    return get(name).default_params()


def create(name: str, params: Mapping[str, Any] | None = None) -> BaseForecaster:
    """An unfitted forecaster; unknown hyperparameter names are errors naming the key."""
    cls = get(name)
    params = dict(params or {})
    valid = set(cls._param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        hint = did_you_mean(unknown[0], valid)
        raise ValueError(
            f"unknown hyperparameter {unknown[0]!r} for algorithm {name!r}; valid: "
            f"{', '.join(sorted(valid))}.{hint}"
        )
    return cls(**params)
