"""The monthly run's typed record: stored JSON unchanged, old and partial records load."""

from __future__ import annotations

import json

from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.store.statedb import StateDB

_FINISHED = {
    "run_id": "20260101T000000Z_production_abc123", "environment": "production",
    "started_at": "2026-01-01T00:00:00Z", "executor": "local",
    "code": {"version": "1.0", "commit": "c0ffee"},
    "release": {"tag": "v1.2.0", "commit": "f" * 40}, "status": "not_published",
    "seconds": 12.5, "state": "/s/production", "ran": ["qa"], "reused": ["snapshot"],
    "tasks": [{"task": "qa", "status": "ran", "seconds": 0.1}],
    "snapshots": {"cm": {"id": "cm-1", "sha256": "ab", "last_month": 540, "first_month": 1}},
    "drift": {"cm": {"alarms": 0, "selftest": {"passed": False}}},
    "qa": {"passed": False, "failed": [{"model": "m1", "problems": ["negative"]}]},
    "output_drift": None, "alerts": {"count": 1, "by_source": {"qa": 1}},
    "outputs": {"predictions": "/s/production/predictions", "runs": {"cm": "r1"},
                "partitions": [{"model": "m1", "level": "cm", "path": "p/m1.parquet"}],
                "report": None, "published": [], "not_published": "refusing: QA",
                "not_published_reasons": ["QA failed"], "alerts_log": "/s/alerts.jsonl",
                "a_newer_output": 3},
    "tracking": None, "finished_at": "2026-01-01T00:01:00Z", "kind_of_extra": "kept",
}


def test_a_finished_record_round_trips_unchanged_and_reads_typed() -> None:
    rec = MonthlyRunRecord.from_dict(json.loads(json.dumps(_FINISHED)))
    assert rec.to_dict() == _FINISHED  # same keys, same values: stored format unchanged
    assert rec.finished and rec.qa_passed is False
    assert rec.qa is not None and rec.qa.failed_models == ["m1"]
    assert rec.snapshot_ids == {"cm": "cm-1"} and rec.selftest_failed == ["cm"]
    assert rec.outputs.runs == {"cm": "r1"} and rec.outputs.not_published_reasons == ["QA failed"]
    assert rec.release_tag == "v1.2.0"
    old = MonthlyRunRecord.from_dict({"run_id": "o", "release": "v0.9.0"})  # an older form
    assert old.release_tag == "v0.9.0" and old.to_dict() == {"run_id": "o", "release": "v0.9.0"}


def test_old_and_unfinished_records_load_with_defaults(tmp_path) -> None:
    running = {"run_id": "r", "environment": "development", "started_at": "2025-01-01T00:00:00Z",
               "executor": "local", "code": {}, "release": None, "status": "running"}
    db = StateDB("", sqlite_path=tmp_path / "state.db")
    db.record_run(running)
    db.record_run(MonthlyRunRecord.from_dict({**running, "run_id": "f", "status": "failed",
                                              "error": "boom"}))
    by_id = {r.run_id: r for r in db.run_records("development")}
    assert by_id["r"].to_dict() == running  # no default invented for a missing field
    assert not by_id["r"].finished and by_id["r"].qa_passed is None
    assert by_id["r"].outputs.partitions is None and by_id["r"].snapshot_ids == {}
    assert by_id["f"].error == "boom" and not by_id["f"].finished
    assert MonthlyRunRecord.from_output({"error": "x", "exit_code": 2}) is None
