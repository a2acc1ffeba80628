"""Hash checks of stored files (ewspipe.store.integrity) and the state database's refusals."""

from __future__ import annotations

import json
import os

import pytest

from ewspipe.errors import IntegrityError
from ewspipe.store import integrity
from ewspipe.store.integrity import (
    open_sealed_json,
    record_sha256,
    seal_json,
    sidecar,
    verify_file,
)
from ewspipe.store.statedb import StateDB, open_state_db, open_state_db_for_reading


def test_a_file_is_hashed_once_per_change(tmp_path, monkeypatch) -> None:
    path = tmp_path / "part-0.parquet"
    path.write_bytes(b"x" * 1000)
    record_sha256(path)
    calls = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: calls.append(p) or real(p))
    for _ in range(5):
        assert verify_file(path, fix="fix it") is True
    assert len(calls) == 1
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a new mtime even on coarse clocks
    with pytest.raises(IntegrityError, match=r"part-0\.parquet.*sha256.*fix it"):
        verify_file(path, fix="fix it")
    assert len(calls) == 2


def test_a_file_without_a_recorded_hash_is_read_unverified(tmp_path) -> None:
    path = tmp_path / "old.parquet"
    path.write_bytes(b"old")
    assert verify_file(path, fix="-") is False
    assert not sidecar(path).exists()


def test_a_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(IntegrityError, match=r"gone\.parquet.*missing"):
        verify_file(tmp_path / "gone.parquet", fix="-")


def test_a_sealed_json_detects_an_edit_and_drops_the_seal(tmp_path) -> None:
    path = tmp_path / "ged_sb.json"
    path.write_text(json.dumps(seal_json({"run": "m1", "models": ["a"]})))
    assert open_sealed_json(path, what="pointer", fix="-") == {"run": "m1", "models": ["a"]}
    path.write_text(path.read_text().replace("m1", "m2"))
    with pytest.raises(IntegrityError, match="content_sha256"):
        open_sealed_json(path, what="pointer", fix="-")
    path.write_text('{"run": "m1"}')  # unsealed: a pointer of an older version
    assert open_sealed_json(path, what="pointer", fix="-") == {"run": "m1"}


def test_a_garbage_state_db_is_an_integrity_error_naming_it(tmp_path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(IntegrityError, match=r"state\.db.*damaged.*restore"):
        open_state_db("", tmp_path)
    with pytest.raises(IntegrityError, match=r"state\.db"):
        open_state_db_for_reading("", tmp_path)


def test_reading_never_creates_or_changes_the_state_db(tmp_path) -> None:
    assert open_state_db_for_reading("", tmp_path) is None
    assert not (tmp_path / "state.db").exists()
    # a database of an older version without the newer tables reads as empty, unchanged
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as con:
        con.execute("CREATE TABLE unrelated (x)")
    before = (tmp_path / "state.db").read_bytes()
    db = open_state_db_for_reading("", tmp_path)
    assert isinstance(db, StateDB)
    assert db.runs() == [] and db.releases() == [] and db.pointer_history("cm", "ged_sb") == []
    assert (tmp_path / "state.db").read_bytes() == before
