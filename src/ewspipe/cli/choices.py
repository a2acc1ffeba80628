"""Declared choices of the common options. Typer turns a ``Literal`` annotation into a click
choice: ``--help`` shows the values and any other value is a usage error naming them. The
library validates again (it is called without the CLI too)."""

from __future__ import annotations

from typing import Literal

from ewspipe.settings import RunSettings

__all__ = ["ENVIRONMENTS", "EvaluationRunType", "GedLevel", "LevelName", "RunTypeName"]

#: ``--level``: a level of analysis (:class:`ewspipe.panel.schema.Level`)
LevelName = Literal["cm", "pgm"]
#: ``--level`` of the GED import and pull, which can build both levels at once
GedLevel = Literal["cm", "pgm", "both"]
#: ``--run-type`` of the drift thresholds (:class:`ewspipe.partitions.RunType`)
RunTypeName = Literal["calibration", "validation", "forecasting"]
#: ``--run-type`` of an evaluation: forecasting is ``ewspipe forecast``'s
EvaluationRunType = Literal["calibration", "validation"]

#: ``--env`` takes one of the configured ``[run] environments``, so its choices cannot be
#: static: the help names the built-in ones and the library refuses any other
ENVIRONMENTS = ("one of [run] environments (built-in: "
                + ", ".join(RunSettings.model_fields["environments"].default) + ")")
