"""Evaluation: metrics selected by name, and step-, month- and sequence-wise scoring, of a
whole forecast (``evaluate``) or of one streamed chunk by chunk (``score_streamed``)."""

from ewspipe.evaluation.metrics import Metric, MetricUndefined, get_metric, names
from ewspipe.evaluation.schemes import (
    SCHEMES,
    Evaluation,
    Scored,
    evaluate,
    join_actuals,
)
from ewspipe.evaluation.streamed import StreamedScorer, iter_chunks, score_streamed

__all__ = [
    "SCHEMES",
    "Evaluation",
    "Metric",
    "MetricUndefined",
    "Scored",
    "StreamedScorer",
    "evaluate",
    "get_metric",
    "iter_chunks",
    "join_actuals",
    "names",
    "score_streamed",
]
