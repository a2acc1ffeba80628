"""Fixtures for the flows tests.

``workspace``: the monthly-run workspace (monthly_workspace.py). The online-evaluation
fixtures live in online_history.py (see the note in the monthly-run engineer's report).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monthly_workspace import write_monthly_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """ewspipe.toml of a small monthly-run workspace."""
    return write_monthly_workspace(tmp_path / "ws")
