"""Printing: one JSON document on stdout with --json, readable text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ewspipe.errors import InputError
from ewspipe.panel.schema import ValidationReport
from ewspipe.progress import Reporter, for_stream, reporting

__all__ = ["JSON_OPTION", "NO_ALERTS_OPTION", "QUIET_OPTION", "emit", "progress_on_stderr",
           "snapshot_words", "validation_lines"]

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")
NO_ALERTS_OPTION = typer.Option(False, "--no-alerts", help="Do not deliver alerts: nothing "
                                "goes to the [alerts] sinks or the alert log (alerts.jsonl).")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress on stderr (progress "
                            "never goes to stdout: --json output stays one document).")


@contextmanager
def snapshot_words() -> Iterator[None]:
    """The library's refusal of two snapshots of one level, said about --snapshot (the
    repeatable option, one id per level)."""
    try:
        yield
    except InputError as exc:
        if str(exc).startswith("two snapshots given"):
            raise InputError(f"option --snapshot: {exc}") from None
        raise


@contextmanager
def progress_on_stderr(quiet: bool) -> Iterator[Reporter]:
    """The command's progress: Rich bars when stderr is a terminal, plain lines when it is
    not (CI logs), nothing with --quiet; installed for the library's flows meanwhile."""
    with reporting(for_stream(sys.stderr, quiet=quiet)) as reporter:
        yield reporter


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit(data: dict[str, Any], as_json: bool, human: Callable[[], str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=_default, indent=2) + "\n")
    else:
        typer.echo(human())


def validation_lines(report: ValidationReport | dict[str, Any]) -> list[str]:
    rep = report.to_dict() if isinstance(report, ValidationReport) else report
    verdict = "PASS" if rep["passed"] else "FAIL"
    lines = [f"Validation report ({verdict}):"]
    for check in rep["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        lines.append(f"  [{mark}] {check['name']:<15} {check['detail']}")
    return lines
