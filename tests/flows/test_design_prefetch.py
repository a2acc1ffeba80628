"""In-process runs build the next model's design during the previous fit, unless it is too
large to hold two at once (the global pgm grid)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import ewspipe.flows.modelrun as modelrun
from ewspipe.catalog.spec import ModelSpec
from ewspipe.flows.modelrun import ModelRunContext, design_bytes, model_design
from ewspipe.panel.schema import validate_panel
from ewspipe.settings import Settings


def _spec(name: str, window: int | None) -> ModelSpec:
    hyper = {"learner": "ridge", "steps": 3}
    if window is not None:
        hyper["train_window"] = window
    return ModelSpec.model_validate({
        "name": name, "level": "cm", "target": "ged_sb", "algorithm": "stepshifter",
        "status": "shadow", "owner": "tests", "description": "A test model.",
        "features": ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 3)"],
        "hyperparameters": hyper})


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame([{"month_id": m, "country_id": c, "ged_sb": int(rng.integers(0, 9))}
                          for m in range(121, 181) for c in (1, 2, 3, 4)])
    return validate_panel(frame, "cm", source="test")[0]


@pytest.mark.parametrize("window", [None, 12])
def test_design_bytes_is_the_size_of_the_design_built(panel, window) -> None:
    spec = _spec("first_model", window)
    manifest = SimpleNamespace(id="snap")
    design = model_design(spec, panel, manifest, train_last=170)  # type: ignore[arg-type]
    rows, columns = design.X.shape
    assert design_bytes(spec, panel, train_last=170) == rows * columns * 8 > 0  # as float64
    assert design.X.nbytes <= design_bytes(spec, panel, train_last=170)


@pytest.mark.parametrize(("limit", "built"), [(1 << 30, True), (100, False)])
def test_the_next_design_is_built_ahead_only_below_the_limit(panel, monkeypatch, limit,
                                                              built) -> None:
    specs = {"first_model": _spec("first_model", None),
             "next_model": _spec("next_model", 12)}
    monkeypatch.setattr(modelrun, "load_snapshot",
                        lambda folder, sid: (SimpleNamespace(id=sid, last_month=180), panel))
    monkeypatch.setattr(modelrun, "PREFETCH_MAX_BYTES", limit)
    ctx = ModelRunContext(settings=Settings(), specs=specs,
                          order=(("first_model", "s1"), ("next_model", "s1")))
    try:
        modelrun._prefetch_next(ctx, "first_model", "forecasting")
        ahead = [key for key in modelrun._PREFETCHED if key[0] == "next_model"]
        assert bool(ahead) is built
        if built:
            design, _ = modelrun._PREFETCHED[ahead[0]].result()
            assert design.X.nbytes <= design_bytes(specs["next_model"], panel, train_last=180)
    finally:
        modelrun._drop_prefetched()


def test_no_design_is_built_ahead_past_half_the_budget(panel, monkeypatch) -> None:
    """Past half the budget the fit just dropped the cached panels (spare_panels): building
    the next design ahead would load them again for the whole fit."""
    specs = {"first_model": _spec("first_model", None),
             "next_model": _spec("next_model", 12)}
    loads = []
    monkeypatch.setattr(modelrun, "load_snapshot", lambda folder, sid: loads.append(sid) or (
        SimpleNamespace(id=sid, last_month=180), panel))
    monkeypatch.setattr(modelrun, "resident_bytes", lambda: 5 << 30)
    ctx = ModelRunContext(settings=Settings(), specs=specs,
                          order=(("first_model", "s1"), ("next_model", "s1")))
    try:
        assert Settings().run.memory_budget_bytes // 2 < 5 << 30
        modelrun._prefetch_next(ctx, "first_model", "forecasting")
        assert loads == [] and not any(k[0] == "next_model" for k in modelrun._PREFETCHED)
    finally:
        modelrun._drop_prefetched()

