"""Run records: one folder per evaluation or forecast run, made visible only when complete.

A run is assembled in a temporary folder (predictions, metric tables, ``run.json``) and
renamed into ``runs/<YYYYMMDD_HHMMSS>_<kind>_<run type>_<id>`` at the end, so a crash never
leaves a half-written run that a reader could mistake for a finished one. The sha256 of
``run.json`` is recorded beside it (``run.json.sha256``, committed with it) and checked on
every read (:mod:`ewspipe.store.integrity`).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ewspipe.atomic import TMP_DIR_PREFIX, commit_dir, json_default, make_temp_dir
from ewspipe.errors import InputError, IntegrityError
from ewspipe.provenance import timestamp
from ewspipe.store.integrity import record_sha256, verify_file

__all__ = ["RunStore", "RunWriter"]

RUN_FILE = "run.json"
_TMP = TMP_DIR_PREFIX


@dataclass
class RunWriter:
    """Collects a run's files in a temporary folder; ``commit`` publishes it atomically."""

    store: RunStore
    run_id: str
    tmp: Path

    @property
    def path(self) -> Path:
        return self.tmp

    def write_json(self, relative: str, data: Any) -> Path:
        path = self.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
        return path

    def commit(self, record: dict[str, Any]) -> Path:
        record_sha256(self.write_json(RUN_FILE, {"run_id": self.run_id, **record}))
        final = self.store.root / self.run_id
        commit_dir(self.tmp, final)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def begin(self, kind: str, run_type: str) -> RunWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = f"{timestamp()}_{kind}_{run_type}_{uuid.uuid4().hex[:6]}"
        return RunWriter(self, run_id, make_temp_dir(self.root / run_id))

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        runs = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(_TMP) or not (path / RUN_FILE).is_file():
                continue
            runs.append(self._read(path))
        return runs

    def get(self, run_id: str) -> dict[str, Any]:
        hits = [p for p in self.root.glob(f"*{run_id}*") if not p.name.startswith(_TMP)] \
            if self.root.is_dir() else []
        if len(hits) != 1:
            what = "no run" if not hits else f"{len(hits)} runs"
            raise InputError(f"{what} match '{run_id}' in {self.root}; the run ids are the "
                             "folder names there (`ewspipe evaluate` and `ewspipe forecast` "
                             "print the id of each run)")
        return self._read(hits[0])

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def find(self, run_id: str) -> dict[str, Any] | None:
        """The committed run with exactly this id, or None (no prefix matching, unlike
        :meth:`get`)."""
        path = self.path(run_id)
        if run_id.startswith(_TMP) or not (path / RUN_FILE).is_file():
            return None
        return self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        file = path / RUN_FILE
        fix = (f"restore {path} from a backup, or move it out of the runs folder and re-run "
               "the `ewspipe evaluate` or `ewspipe forecast` that made it")
        verify_file(file, fix=fix)
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{file}: unreadable run record ({exc}); {fix}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("run_id"), str):
            raise IntegrityError(f"{file}: unreadable run record (not a JSON object with a "
                                 f"run_id); {fix}")
        return doc
