"""Model files the CLI tests write into their small workspaces."""

from __future__ import annotations

__all__ = ["baseline"]

BASELINE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "{algorithm}"
status = "baseline"
owner = "tests"
description = "A baseline."
features = []
"""


def baseline(name: str, algorithm: str, level: str = "cm") -> str:
    """The TOML of a baseline model ``name`` at ``level``."""
    return BASELINE.format(name=name, algorithm=algorithm, level=level)
