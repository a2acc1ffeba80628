"""Checks of the public API's arguments, so a notebook user's slip is an
:class:`~ewspipe.errors.InputError` naming the argument, not a TypeError from deep inside."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ewspipe.errors import InputError

__all__ = ["as_path", "names_list"]


def as_path(value: object, parameter: str) -> Path:
    """``value`` as a filesystem path: a str or path-like without NUL bytes."""
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise InputError(f"{parameter}: cannot use a {type(value).__name__} as a path; pass a "
                         "str or a pathlib.Path", parameter=parameter)
    text = os.fspath(value)
    if not isinstance(text, str) or "\0" in text or not text:
        raise InputError(f"{parameter}: {text!r} is not a usable path (empty, or a NUL byte "
                         "in it)", parameter=parameter)
    return Path(text)


def names_list(value: object, parameter: str = "names") -> list[str] | None:
    """One name or several: a single string is one name, never its characters."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) or not isinstance(value, Iterable) \
        else list(value)
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad:
        raise InputError(f"{parameter}: {bad[0]!r} is not a name; pass a name or a list of "
                         "names", parameter=parameter)
    return items
