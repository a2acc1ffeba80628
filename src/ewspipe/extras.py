"""Optional dependencies: the one place that imports them and turns a missing one into an
install hint naming the extra (``pip install 'ewspipe[dask]'``).

The core (data, models, evaluation, the monthly run in-process) needs none of them; the API
server, Dask executors, sweeps and Prefect each import theirs through :func:`require` when
first used. ``make run`` / ``make test`` install every extra but Prefect from the lock file.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType, ModuleType

from ewspipe.errors import InputError

__all__ = ["EXTRAS", "MissingExtra", "install_hint", "require"]

#: extra (as in ``pip install 'ewspipe[extra]'``) -> the top-level modules it provides
EXTRAS = MappingProxyType({
    "api": ("fastapi", "uvicorn"),
    "dask": ("dask", "distributed"),
    "optuna": ("optuna",),
    "prefect": ("prefect",),
    "postgres": ("psycopg",),
    "xgboost": ("xgboost",),
})


class MissingExtra(InputError):
    """An optional dependency is not installed (exit 2); the message says which extra."""

    def __init__(self, message: str, *, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.module = module


def install_hint(extra: str) -> str:
    return f"pip install 'ewspipe[{extra}]'"


def require(extra: str, module: str, *, what: str | None = None,
            alternative: str | None = None) -> ModuleType:
    """``module`` (e.g. ``distributed`` or ``prefect.deployments``), imported.

    Args:
        extra: the extra that installs it; must be a key of :data:`EXTRAS`.
        module: what to import; its top-level package must belong to ``extra``.
        what: who needs it, for the message (e.g. ``"option --executor dask"``).
        alternative: how to do without it, appended to the message.

    Raises:
        MissingExtra: the module (or something it imports) is not installed.
    """
    top = module.partition(".")[0]
    if top not in EXTRAS.get(extra, ()):
        raise ValueError(f"module {module!r} is not part of the extra {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        who = f"{what} needs" if what else "this needs"
        missing = getattr(exc, "name", None) or top
        tail = f"; or {alternative}" if alternative else ""
        raise MissingExtra(
            f"{who} the optional dependency {top}, which is not installed (no module named "
            f"{missing!r}); install it with: {install_hint(extra)}{tail}",
            extra=extra, module=module,
        ) from None
