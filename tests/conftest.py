"""Shared fixtures: the real data folder (skipped with a reason when absent) and a CLI runner."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ewspipe.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("EWSPIPE_SHARED_DIR", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data; CI sets EWSPIPE_REQUIRE_SHARED=1 so a missing folder fails, never skips."""
    path = shared_data_dir()
    if not path.is_dir():
        reason = (
            f"real data folder {path} is absent; set EWSPIPE_SHARED_DIR to the folder holding "
            "data/ to run this test"
        )
        if os.environ.get("EWSPIPE_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def cli(state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `ewspipe ARGS` in-process against a fresh state dir and built-in settings."""
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.chdir(state_dir.parent)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(["--state-dir", str(state_dir), *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
