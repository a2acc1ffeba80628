"""ewspipe: monthly conflict early-warning forecasts, from data to published release.

The public API is loaded on first use (``ewspipe.backtest`` imports the forecasting engine,
``import ewspipe`` alone does not), so the CLI and small scripts stay fast::

    import ewspipe
    panel = ewspipe.load_panel("views_fat002_ged_sb_cm.parquet")
    ewspipe.backtest("last_value", panel, partition="calibration").msle

Type checkers read the names' types from ``__init__.pyi`` (imports here would be circles:
the modules behind these names import ``__version__`` from this one).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("ewspipe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

#: public name -> the module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "BacktestResult": "ewspipe.library",
    "Evaluation": "ewspipe.library",
    "Forecast": "ewspipe.models.forecast",
    "ModelSpec": "ewspipe.catalog.spec",
    "Panel": "ewspipe.panel.schema",
    "Workspace": "ewspipe.workspace",
    "backtest": "ewspipe.library",
    "backtest_forecasts": "ewspipe.library",
    "forecast": "ewspipe.library",
    "init_workspace": "ewspipe.starter",
    "load_panel": "ewspipe.library",
    "load_settings": "ewspipe.settings",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ewspipe' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
