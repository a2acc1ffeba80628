"""Declared choices of the common options. Typer turns a ``Literal`` annotation into a click
choice: ``--help`` shows the values and any other value is a usage error naming them. The
library validates again (it is called without the CLI too)."""

from __future__ import annotations

from typing import Literal

from ewspipe.settings import RunSettings

__all__ = ["ENVIRONMENTS", "BumpName", "CompareBy", "DuplicatesPolicy", "EvaluationRunType",
           "GedLevel", "LevelName", "MissingName", "OutFormat", "RunTypeName", "SeverityName",
           "StackCombine", "StatusName", "SweepOn"]

#: ``--level``: a level of analysis (:class:`ewspipe.panel.schema.Level`)
LevelName = Literal["cm", "pgm"]
#: ``--level`` of the GED import and pull, which can build both levels at once
GedLevel = Literal["cm", "pgm", "both"]
#: ``--run-type`` of the drift thresholds (:class:`ewspipe.partitions.RunType`)
RunTypeName = Literal["calibration", "validation", "forecasting"]
#: ``--run-type`` of an evaluation: forecasting is ``ewspipe forecast``'s; backtest is every
#: ``[partitions.backtest]`` window
EvaluationRunType = Literal["calibration", "validation", "backtest"]
#: ``models sweep --on``: the objective (:data:`ewspipe.flows.sweep.SWEEP_ON`)
SweepOn = Literal["backtest", "calibration"]
#: ``models stack --combine`` (:data:`ewspipe.ensembles.stacking.COMBINATIONS`)
StackCombine = Literal["logmean", "mean"]

#: ``--missing`` of a panel import (:class:`ewspipe.panel.schema.MissingPolicy`)
MissingName = Literal["error", "zero"]
#: ``--duplicates`` of a GED import or pull: refuse repeated event ids or keep the first
DuplicatesPolicy = Literal["refuse", "drop"]
#: ``forecasts query --format`` of ``--out``. Same order as the API's ``format`` on purpose:
#: typing treats two Literals of the same values as equal whatever their order, so typer and
#: pydantic would show whichever was built first in both places.
OutFormat = Literal["json", "csv", "parquet"]
#: ``evaluate compare --by``: the Diebold-Mariano periods
CompareBy = Literal["month", "origin"]
#: ``alerts list --severity`` (:class:`ewspipe.alerts.records.Severity`; any case)
SeverityName = Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
#: ``models ... --status`` (:class:`ewspipe.catalog.rules.Status`)
StatusName = Literal["deployed", "shadow", "baseline", "deprecated"]
#: ``release promote --bump`` (:class:`ewspipe.release.version.Bump`)
BumpName = Literal["major", "minor", "patch"]

#: ``--env`` takes one of the configured ``[run] environments``, so its choices cannot be
#: static: the help names the built-in ones and the library refuses any other
ENVIRONMENTS = ("one of [run] environments (built-in: "
                + ", ".join(RunSettings.model_fields["environments"].default) + ")")
