"""Above half the memory budget, a built design lets the cached panels go."""

from __future__ import annotations

import pytest

from ewspipe.flows import modelrun
from ewspipe.flows.modelrun import load_snapshot, spare_panels
from ewspipe.memory import resident_bytes


def test_resident_bytes_is_this_process(monkeypatch) -> None:
    held = resident_bytes()
    assert 10 << 20 < held < 64 << 30
    block = bytearray(64 << 20)  # touched: resident
    assert resident_bytes() >= held + (48 << 20)
    del block


@pytest.mark.parametrize(("budget", "dropped"), [(1 << 50, False), (1 << 20, True)])
def test_cached_panels_are_dropped_only_above_half_the_budget(monkeypatch, budget,
                                                              dropped) -> None:
    cleared = []
    monkeypatch.setattr(load_snapshot, "cache_clear", lambda: cleared.append(True))
    spare_panels(budget)
    assert bool(cleared) is dropped
    assert modelrun.resident_bytes is resident_bytes  # the run measures the real process
