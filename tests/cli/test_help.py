"""Every command's ``--help`` shows its source help text intact.

Rich markup once ate bracketed words (``ewspipe[prefect]`` became ``ewspipe``, ``[api] port``
became `` port``): a settings table or an extra named in brackets must reach the reader. The
commands and groups are found by walking the click tree, so a new command is covered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
import typer

from ewspipe.cli.main import app

BRACKETED = re.compile(r"\S*\[[\w.\-]+\]\S*")


def _walk(cmd: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _walk(sub, [*path, name])


NODES = dict(_walk(typer.main.get_command(app), []))


def _bracketed(cmd: click.Command) -> set[str]:
    """The bracketed words of the command's help and its parameters' help, as written."""
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    return {m.group(0).strip("().,;:'\"`") for t in texts for m in BRACKETED.finditer(t)}


def test_the_walk_finds_bracketed_words() -> None:
    """Guard against a walk that checks nothing: the known cases are there."""
    assert "ewspipe[prefect]" in _bracketed(NODES["prefect"])
    assert "[api]" in _bracketed(NODES["serve"])


@pytest.mark.parametrize("path", sorted(NODES))
def test_help_keeps_bracketed_words(cli, path: str) -> None:
    res = cli(*path.split(), "--help")
    assert res.code == 0, res.err
    flat = " ".join(res.out.split())  # help is re-wrapped: compare with whitespace collapsed
    missing = sorted(w for w in _bracketed(NODES[path]) if w not in flat)
    assert not missing, f"`ewspipe {path} --help` lost {missing}:\n{res.out}"
    assert not re.search(r"<(list|tuple|dict)\[", res.out), \
        f"`ewspipe {path} --help` shows a Python type as a metavar:\n{res.out}"


#: Imported only by the commands that use them: every CLI start (``--help``, shell completion,
#: ``status``) would otherwise pay for them (scipy.stats alone took about 1 s of 2.3 s).
HEAVY = ("scipy", "lightgbm", "sklearn", "mlflow", "sqlalchemy", "duckdb", "distributed",
         "fastapi", "shapely", "matplotlib")


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, ewspipe.cli.main; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"importing the CLI imported {out}"
