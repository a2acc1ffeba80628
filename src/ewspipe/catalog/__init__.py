"""Model definitions (``models/<adjective_noun>.toml``): specs, rules, loading, pages, scaffold.

Not a data catalog: this is the registry of named models the pipeline runs.
"""

from ewspipe.catalog.loader import (
    Catalog,
    CheckReport,
    FileReport,
    Problem,
    check_models,
    default_models_dir,
    load_catalog,
)
from ewspipe.catalog.pages import non_default_hyperparameters, render_level_page, write_pages
from ewspipe.catalog.rules import (
    Status,
    check_ensemble_member,
    check_name,
    check_target,
    require_runnable,
)
from ewspipe.catalog.scaffold import render_model, scaffold_model
from ewspipe.catalog.spec import ModelSpec

__all__ = [
    "Catalog",
    "CheckReport",
    "FileReport",
    "ModelSpec",
    "Problem",
    "Status",
    "check_ensemble_member",
    "check_models",
    "check_name",
    "check_target",
    "default_models_dir",
    "load_catalog",
    "non_default_hyperparameters",
    "render_level_page",
    "render_model",
    "require_runnable",
    "scaffold_model",
    "write_pages",
]
