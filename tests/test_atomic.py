"""ewspipe.atomic: a failed write leaves the old file and no temporary; writers never collide."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ewspipe import atomic


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_text_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    atomic.write_text(path, "old\n")
    atomic.write_json(path, {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    assert _names(tmp_path) == ["a.json"]


def test_failure_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic.atomic_file(path) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert _names(tmp_path) == ["f.parquet"]


def test_a_writer_that_writes_nothing_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    with pytest.raises(FileNotFoundError), atomic.atomic_file(path):
        pass
    assert _names(tmp_path) == []


def test_unserialisable_json_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic.write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        atomic.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert _names(tmp_path) == ["x.json"]


def test_mode_and_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    atomic.write_text(path, "first", mode=0o640, exclusive=True)
    assert path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileExistsError):
        atomic.write_text(path, "second", exclusive=True)
    assert path.read_text() == "first"
    assert _names(tmp_path) == ["new.toml"]


def test_temporary_names_are_unique_hidden_siblings(tmp_path: Path) -> None:
    final = tmp_path / "run.json"
    names = {atomic.temp_path(final) for _ in range(200)}
    assert len(names) == 200
    assert all(p.parent == tmp_path and p.name.startswith(".run.json.")
               and p.name.endswith(".tmp") for p in names)


def test_concurrent_writers_never_collide(tmp_path: Path) -> None:
    """Many threads replacing one file: every write succeeds, the file is always one whole
    document, and no temporary is left behind (a fixed temporary name fails this)."""
    path = tmp_path / "pointer.json"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        try:
            start.wait()
            for j in range(25):
                atomic.write_json(path, {"writer": i, "n": j, "pad": "x" * 5000})
                doc = json.loads(path.read_text())
                assert len(doc["pad"]) == 5000
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["n"] == 24
    assert _names(tmp_path) == ["pointer.json"]


def test_atomic_dir_commits_and_refuses_an_existing_folder(tmp_path: Path) -> None:
    final = tmp_path / "snap"
    with atomic.atomic_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(atomic.TMP_DIR_PREFIX)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "data").write_text("one")
    assert (final / "sub" / "data").read_text() == "one"
    with pytest.raises(FileExistsError), atomic.atomic_dir(final) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "data").write_text("two")
    assert (final / "sub" / "data").read_text() == "one"
    assert _names(tmp_path) == ["snap"]


def test_atomic_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "report"
    with pytest.raises(ValueError), atomic.atomic_dir(final) as tmp:
        (tmp / "page.html").write_text("<html>")
        raise ValueError("render failed")
    assert not final.exists()
    assert _names(tmp_path / "deep") == []


def test_atomic_dir_replace_swaps_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "report"
    with atomic.atomic_dir(final, replace=True) as tmp:
        (tmp / "old.png").write_bytes(b"1")
    with pytest.raises(ValueError), atomic.atomic_dir(final, replace=True) as tmp:
        raise ValueError("boom")
    assert _names(final) == ["old.png"]
    with atomic.atomic_dir(final, replace=True) as tmp:
        (tmp / "new.png").write_bytes(b"2")
    assert _names(final) == ["new.png"]
    assert _names(tmp_path) == ["report"]


def test_concurrent_folder_commits_keep_one_winner(tmp_path: Path) -> None:
    final = tmp_path / "part"
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def writer(i: int) -> None:
        start.wait()
        try:
            with atomic.atomic_dir(final) as tmp:
                (tmp / "who").write_text(str(i))
            outcomes.append("won")
        except FileExistsError:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]
    assert (final / "who").read_text() in {str(i) for i in range(6)}
    assert _names(tmp_path) == ["part"]


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path):
    """A writer killed mid-write leaves a temporary folder or file that will never be
    committed; the next write into that folder removes it (its pid is gone), and leaves
    a live writer's alone. An import into the snapshot store does it."""
    import subprocess
    import sys

    from ewspipe.atomic import make_temp_dir, remove_stale_temps
    from ewspipe.panel.ingest import import_frame
    from ewspipe.panel.snapshot import SnapshotStore
    from ewspipe.panel.synthetic import demo_world
    from ewspipe.settings import DemoSettings

    snapshots = tmp_path / "snapshots"
    code = ("import sys; from pathlib import Path; from ewspipe.atomic import make_temp_dir, "
            "temp_path; d = make_temp_dir(Path(sys.argv[1]) / 'cm-abc'); "
            "(d / 'x.parquet').write_text('half'); "
            "temp_path(Path(sys.argv[1]) / 'm.json').write_text('half')")
    subprocess.run([sys.executable, "-c", code, str(snapshots)], check=True)  # then it died
    dead = sorted(p.name for p in snapshots.iterdir())
    assert len(dead) == 2
    live = make_temp_dir(snapshots / "cm-def")
    assert remove_stale_temps(tmp_path / "missing") == []

    world = demo_world(DemoSettings(countries=10, pgm_cells=50))
    import_frame(world.cm, "cm", SnapshotStore(snapshots), source={"kind": "test"},
                 source_name="demo cm")
    left = {p.name for p in snapshots.iterdir()}
    assert not left & set(dead) and live.name in left
    assert len(SnapshotStore(snapshots).list()) == 1
