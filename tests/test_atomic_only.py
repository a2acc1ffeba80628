"""ewspipe.atomic is the only implementation of atomic writes (issue 17): no other module in
src/ewspipe renames files into place, fsyncs or hard-links by hand."""

from __future__ import annotations

import re
from pathlib import Path

import ewspipe

SRC = Path(ewspipe.__file__).resolve().parent
PATTERN = re.compile(r"\bos\.(replace|rename|link|fsync)\(|\.rename\(|\bfsync\(")

# (module relative to src/ewspipe, the line's code) that may match, and why
ALLOWED = {
    # the one implementation
    ("atomic.py", None),
    # pandas: renames a column/Series, not a file
    ("evaluation/compare.py", '.rename(columns={"value": "a"})'),
    ("evaluation/compare.py", '.rename(columns={"value": "b"})'),
    ("release/gates_outputs.py", 'fa.rename("production")'),
    # an append-only log: fsync after each O_APPEND write under flock, no temp file to rename
    ("alerts/log.py", "os.fsync(fd)"),
    # hard-links snapshot files into a folder that ewspipe.atomic.atomic_dir then commits
    ("release/sides.py", "os.link(src, tmp / src.name)"),
    # hard-links a task's forecast file into a run's temporary folder, committed by
    # RunWriter.commit (ewspipe.atomic.commit_dir)
    ("flows/modelrun.py", "os.link(source, target)"),
}


def _allowed(module: str, line: str) -> bool:
    return any(m == module and (code is None or code in line) for m, code in ALLOWED)


def test_no_hand_written_atomic_writes_outside_ewspipe_atomic() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PATTERN.search(line) and not _allowed(module, line):
                offenders.append(f"src/ewspipe/{module}:{number}: {line.strip()}")
    assert not offenders, (
        "write files and folders through ewspipe.atomic (write_text/write_json/write_bytes, "
        "atomic_file, atomic_dir) instead of renaming or fsyncing by hand:\n"
        + "\n".join(offenders)
    )


def test_the_check_sees_a_hand_written_rename() -> None:
    assert PATTERN.search("    os.replace(tmp, path)")
    assert PATTERN.search("    os.rename(tmp, final)")
    assert PATTERN.search("    tmp.rename(final)")
    assert PATTERN.search("        os.fsync(fh.fileno())")
    assert not _allowed("store/runs.py", "    os.rename(tmp, final)")
