"""Evaluation: metrics selected by name, and step-, month- and sequence-wise scoring."""

from ewspipe.evaluation.metrics import Metric, MetricUndefined, get_metric, names
from ewspipe.evaluation.schemes import (
    SCHEMES,
    Evaluation,
    Scored,
    evaluate,
    join_actuals,
)

__all__ = [
    "SCHEMES",
    "Evaluation",
    "Metric",
    "MetricUndefined",
    "Scored",
    "evaluate",
    "get_metric",
    "join_actuals",
    "names",
]
