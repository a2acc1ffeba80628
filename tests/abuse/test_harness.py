"""The harness catches what it promises to catch (else every abuse case could pass vacuously)."""

from __future__ import annotations

import pytest
from tests.abuse.harness import Outcome, assert_refused, tree_digest


def test_a_clean_refusal_passes_and_returns_the_document(ewspipe, tmp_path) -> None:
    before = tree_digest(tmp_path / "state")
    res = ewspipe("--state-dir", tmp_path / "state", "data", "demo", "--last-month", "1", "--json")
    doc = assert_refused(res, code=2, mentions=["--last-month"], before=before,
                         after=tree_digest(tmp_path / "state"))
    assert doc["kind"] == "InputError"


@pytest.mark.parametrize("outcome, why", [
    (Outcome(0, '{"error": "x", "exit_code": 2}', ""), "exit 0"),
    (Outcome(2, "usage: ...", ""), "JSON"),
    (Outcome(2, '{"error": "x", "exit_code": 2}\n{"a": 1}', ""), "JSON"),
    (Outcome(2, '{"error": "x", "exit_code": 2}', "Traceback (most recent call last)"),
     "traceback"),
    (Outcome(2, '{"error": "bad value", "exit_code": 2}', ""), "mention"),
])
def test_the_harness_rejects_a_weak_refusal(outcome: Outcome, why: str) -> None:
    with pytest.raises(AssertionError, match=why):
        assert_refused(outcome, code=2, mentions=["--month"])


def test_the_harness_sees_a_written_file(tmp_path) -> None:
    before = tree_digest(tmp_path / "state")
    (tmp_path / "state").mkdir()
    with pytest.raises(AssertionError, match="changed files"):
        assert_refused(Outcome(2, "", "error: x --month"), json_doc=False, before=before,
                       after=tree_digest(tmp_path / "state"))
