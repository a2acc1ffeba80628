"""Fixtures of the fault-and-abuse suite: a CLI call that returns an :class:`Outcome`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.abuse.harness import Outcome

from ewspipe.cli.main import main


@pytest.fixture
def ewspipe(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> Callable[..., Outcome]:
    """``ewspipe(*args)`` runs the CLI in-process from ``tmp_path`` with no settings file or
    state folder inherited from the environment (pass ``--state-dir``/``--config`` yourself)."""
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
