"""One exception family; the CLI maps each class to an exit code.

Exit codes follow the architecture: 1 = a check or gate failed, 2 = bad input, usage or
damaged stored state; the CLI exits 70 on an unexpected exception (a bug).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckFailed",
    "DownloadError",
    "EwspipeError",
    "InputError",
    "IntegrityError",
    "PanelError",
    "SettingsError",
    "SnapshotNotFound",
    "SpecError",
    "StoreError",
    "did_you_mean",
]


class EwspipeError(Exception):
    """Base of every error ewspipe raises on purpose."""

    exit_code: int = 1


class InputError(EwspipeError, ValueError):
    """The user gave us something we cannot use; the message says what and how to fix it.

    The message speaks the library's words (``executor 'x' is not ...``); ``parameter`` names
    the function argument at fault (``"executor"``, ``"run_type"``) so that a front end can
    name its own spelling of it: the CLI prints ``option --executor: <message>``.
    """

    exit_code = 2

    def __init__(self, *args: object, parameter: str | None = None) -> None:
        super().__init__(*args)
        self.parameter = parameter


class PanelError(InputError):
    """A panel or event file failed validation."""


class SettingsError(InputError):
    """ewspipe.toml (or an option overriding it) is invalid."""


class SpecError(InputError):
    """A model or ensemble definition, or a feature expression in it, is invalid."""


class SnapshotNotFound(InputError, KeyError):
    """No snapshot has the requested id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DownloadError(InputError):
    """A remote file could not be fetched (bad version, unreachable host, corrupt archive)."""


class StoreError(EwspipeError):
    """Stored state is inconsistent (e.g. a file no longer matches its recorded hash).

    Exit 2 everywhere, like bad input: damaged state is something the user must repair (the
    message names the file), not a check that ran and failed."""

    exit_code = 2


class IntegrityError(StoreError):
    """A stored file no longer matches its recorded hash: refuse to use it."""


class CheckFailed(EwspipeError):
    """A check ran and found a problem."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or "" when none is close: the
    tail of an "unknown name" message."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
