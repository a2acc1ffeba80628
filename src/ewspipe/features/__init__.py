"""Declarative, causal feature transforms computed on whole panels.

Model files list features as expressions (``lag(ged_sb, 1)``, ``splag(msum(ged_sb, 12))``);
:func:`build_design` turns a panel and such a list into the :class:`Design` forecasters use.
"""

from ewspipe.features.build import build_design
from ewspipe.features.design import Design
from ewspipe.features.expressions import (
    Call,
    Column,
    Expr,
    canonical_name,
    check_expression,
    parse_expression,
    parse_features,
)
from ewspipe.features.transforms import get_transform
from ewspipe.features.transforms import names as transform_names

__all__ = [
    "Call",
    "Column",
    "Design",
    "Expr",
    "build_design",
    "canonical_name",
    "check_expression",
    "get_transform",
    "parse_expression",
    "parse_features",
    "transform_names",
]
