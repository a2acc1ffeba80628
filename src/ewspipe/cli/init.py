"""`ewspipe init DIR`: start a workspace outside this repository."""

from __future__ import annotations

from pathlib import Path

import typer

from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.starter import init_workspace

__all__ = ["init"]


def init(
    path: Path = typer.Argument(..., help="The new workspace folder (created; must be empty)."),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder, replacing starter files of the "
        "same names (other files stay)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a minimal workspace: commented settings, two models, an ensemble, a .gitignore."""
    written = init_workspace(path, force=force)
    data = {"workspace": str(path), "files": [str(p.relative_to(path)) for p in written]}

    def human() -> str:
        lines = [f"workspace {path}:", *(f"  {f}" for f in data["files"])]
        lines += ["Next:", f"  cd {path}", "  ewspipe data demo    # or: ewspipe data import ...",
                  "  ewspipe run"]
        return "\n".join(lines)

    emit(data, as_json, human)
