"""Ensembles and post-processing: aggregation, pgm -> cm reconciliation, non-negativity."""

from ewspipe.ensembles.aggregate import aggregate, align_members, pool_samples
from ewspipe.ensembles.postprocess import check_finite, clip_negative, postprocess
from ewspipe.ensembles.reconcile import Ownership, Reconciliation, read_ownership, reconcile

__all__ = [
    "Ownership",
    "Reconciliation",
    "aggregate",
    "align_members",
    "check_finite",
    "clip_negative",
    "pool_samples",
    "postprocess",
    "read_ownership",
    "reconcile",
]
