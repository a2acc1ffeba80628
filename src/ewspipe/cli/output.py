"""Printing: one JSON document on stdout with --json, readable text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ewspipe.panel.schema import ValidationReport

__all__ = ["JSON_OPTION", "emit", "validation_lines"]

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


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
