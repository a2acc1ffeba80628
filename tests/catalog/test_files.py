"""The catalog's leaf module: one pydantic-error translator for models, ensembles and sweeps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ewspipe.catalog import ensembles, loader, sweep
from ewspipe.catalog.files import Vocabulary, dotted_key, translate_error

CATALOG = Path(loader.__file__).parent


def test_only_files_py_reads_pydantic_error_types():
    """Every schema's messages come from the one translator, not from a local copy."""
    readers = sorted(p.name for p in CATALOG.glob("*.py")
                     if re.search(r"""err(or)?\[["']type["']\]""", p.read_text(encoding="utf-8")))
    assert readers == ["files.py"]


@pytest.mark.parametrize(("vocabulary", "err", "expected"), [
    (loader.VOCABULARY, {"loc": ("owner",), "type": "string_type", "input": 3,
                         "msg": "Input should be a valid string"},
     ("owner", 'expected a string, got 3 (integer); write e.g. owner = "your.name@example.org"')),
    (loader.VOCABULARY, {"loc": ("features", 2), "type": "string_type", "input": 1,
                         "msg": "Input should be a valid string"},
     ("features[2]", 'expected a string, got 1 (integer); write e.g. "lag(ged_sb, 1)"')),
    (loader.VOCABULARY, {"loc": ("window",), "type": "extra_forbidden", "input": 3,
                         "msg": "Extra inputs are not permitted"},
     ("window", "unknown key; allowed keys: " + ", ".join(loader.VOCABULARY.keys)
      + ". Algorithm parameters belong in the [hyperparameters] table.")),
    (loader.VOCABULARY, {"loc": ("sweep", "space", "seed", "ints"), "type": "extra_forbidden",
                         "input": 3, "msg": "Extra inputs are not permitted"},
     ("sweep.space.seed.ints", "unknown key in a dimension; allowed: int, float, choices, log, "
      "step. Did you mean 'int'?")),
    (loader.VOCABULARY, {"loc": ("sweep", "space"), "type": "missing", "input": {},
                         "msg": "Field required"},
     ("sweep.space", "required key is missing; add a [sweep.space] table with at least one "
      "dimension, e.g. learner_params.num_leaves = { int = [7, 63], log = true }")),
    (sweep.VOCABULARY, {"loc": ("trials",), "type": "greater_than_equal", "input": 0,
                        "msg": "Input should be greater than or equal to 1"},
     ("trials", "got 0 (integer); must be greater than or equal to 1")),
    (ensembles.VOCABULARY, {"loc": ("weights", "amber_tree"), "type": "greater_than",
                            "input": -1, "msg": "Input should be greater than 0"},
     ("weights.amber_tree", "a weight must be a finite number > 0, got -1 (integer)")),
    (ensembles.VOCABULARY, {"loc": ("members",), "type": "too_short", "input": [],
                            "msg": "List should have at least 1 item"},
     ("members", 'an ensemble needs at least one member; write e.g. members = '
      '["amber_tree", "amber_pine"]')),
])
def test_one_translator_words_every_schema(vocabulary: Vocabulary, err, expected):
    assert translate_error(err, vocabulary) == expected


def test_dotted_key_brackets_indices():
    assert dotted_key(("features", 2)) == "features[2]"
    assert dotted_key(("sweep", "space", "learner_params.num_leaves")) == \
        "sweep.space.learner_params.num_leaves"
