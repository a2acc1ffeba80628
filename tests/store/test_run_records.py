"""Run records: committed atomically, found by exact id (find) or unique prefix (get)."""

from __future__ import annotations

import pytest

from ewspipe.errors import InputError
from ewspipe.store.runs import RunStore


def test_find_is_exact_get_takes_a_unique_prefix(tmp_path):
    store = RunStore(tmp_path)
    writer = store.begin("evaluate", "calibration")
    run_id = writer.run_id
    assert store.find(run_id) is None  # not committed yet: not visible
    writer.commit({"run_id": run_id, "kind": "evaluate"})
    assert store.find(run_id)["kind"] == "evaluate"
    assert store.find(run_id[:-2]) is None  # a prefix is not an id
    assert store.get(run_id[:-2])["run_id"] == run_id
    with pytest.raises(InputError, match="no run match"):
        store.get("nope")
