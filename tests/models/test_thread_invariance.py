"""Forecasts are bit-identical for any thread budget, so every executor gives one run id.

A Dask worker runs a task with ``EWSPIPE_THREADS=1`` and one BLAS thread (Dask's nanny sets
``OPENBLAS_NUM_THREADS=1``); in-process tasks use every CPU. OpenBLAS splits the reduction
``X.T @ y`` of the ridge over its threads, which changed ridge_cloud's draws by one ULP (and,
through the reconciliation with steady_chorus, copper_chorus). Each case below fits the same
model on the real cm data or the semi-synthetic pgm data twice, as a Dask worker (budget 1,
BLAS 1) and as an in-process task (budget 4, BLAS 4, more threads than CPUs is allowed), and
compares the raw float64 arrays; the designs they read are compared the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ewspipe.features.build import build_design
from ewspipe.features.design import Design
from ewspipe.models import registry
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import validate_panel
from ewspipe.threads import THREADS_ENV, single_threaded_blas

pytestmark = pytest.mark.shared_data

CM_FEATURES = [  # amber_ridge's / ridge_cloud's history features (a subset, to stay cheap)
    "ged_sb", "lag(ged_sb, 1)", "lag(ged_sb, 12)", "mmean(ged_sb, 3)", "mmean(ged_sb, 12)",
    "mmean(log1p(ged_sb), 36)", "time_since(ged_sb, 1)", "time_since(ged_sb, 100)",
    "decay(ged_sb, 12, 1)", "decay(ged_sb, 24, 25)",
]
PGM_FEATURES = [  # copper_mesh's kinds of features: own history, neighbours, country, place
    "ged_sb", "lag(ged_sb, 1)", "lag(ged_sb, 12)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)",
    "decay(ged_sb, 12, 1)", "splag(ged_sb)", "country_sum(mmean(ged_sb, 12))", "lat()", "lon()",
]
LGBM = {"n_estimators": 20, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50,
        "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8}
RIDGE_CLOUD = {"learner": "ridge", "learner_params": {"alpha": 1.0}, "n_samples": 100}
CM_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ridge_cloud": ("stepshifter", RIDGE_CLOUD),
    "amber_cloud": ("stepshifter", {"learner": "lightgbm", "learner_params": LGBM,
                                    "n_samples": 100}),
    "hurdle": ("hurdle", {"classifier": "logistic", "regressor": "ridge", "n_samples": 50}),
    "twin_gate": ("hurdle", {"classifier": "lightgbm", "classifier_params": LGBM,
                             "regressor": "lightgbm", "regressor_params": LGBM}),
}
PGM_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ridge": ("stepshifter", {**RIDGE_CLOUD, "zero_downsample": 0.5}),
    "copper_mesh": ("stepshifter", {"learner": "lightgbm", "learner_params": LGBM,
                                    "zero_downsample": 0.5}),
}
CM_TRAIN_LAST = 498  # real cm: origin June 2021, 3 steps of real targets after it
PGM_TRAIN_LAST = 520
PGM_FIRST_MONTH = 400  # all 790 cells of the small semi-synthetic file, from May 2013


def _panel_design(frame: pd.DataFrame, level: str, features: list[str]) -> Design:
    panel, _ = validate_panel(frame, level, source=f"real {level} data")
    return build_design(panel, "ged_sb", features)


@pytest.fixture(scope="module")
def cm_design(shared_data: Path) -> Design:
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    frame = pd.read_parquet(path, columns=["month_id", "country_id", "ged_sb"])
    return _panel_design(frame, "cm", CM_FEATURES)


@pytest.fixture(scope="module")
def pgm_design(shared_data: Path) -> Design:
    frame = pd.read_parquet(shared_data / "pgm_semisynthetic" / "pgm_ged_sb_small.parquet")
    frame = frame[frame["month_id"] >= PGM_FIRST_MONTH]
    return _panel_design(frame.reset_index(drop=True), "pgm", PGM_FEATURES)


def _forecast(design: Design, train_last: int, algorithm: str, params: Mapping[str, Any],
              threads: int, monkeypatch: pytest.MonkeyPatch) -> Forecast:
    """Fit and predict as a task with ``threads`` threads (task budget and BLAS threads)."""
    monkeypatch.setenv(THREADS_ENV, str(threads))
    with threadpool_limits(limits=threads, user_api="blas"):
        model = registry.create(algorithm, {"steps": 3, "seed": 7, **params})
        model.fit(design, train_last=train_last)
        return model.predict(design, origin=train_last, steps=[1, 2, 3])


def _assert_invariant(design: Design, train_last: int, algorithm: str,
                      params: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    one = _forecast(design, train_last, algorithm, params, 1, monkeypatch)
    many = _forecast(design, train_last, algorithm, params, 4, monkeypatch)
    assert np.array_equal(one.point, many.point), \
        f"point differs in {int((one.point != many.point).sum())} rows"
    assert np.array_equal(one.samples, many.samples), \
        f"samples differ in {int((one.samples != many.samples).any(axis=1).sum())} rows"
    assert one.frame.equals(many.frame)


@pytest.mark.parametrize("case", sorted(CM_CASES))
def test_real_cm_forecasts_do_not_depend_on_the_thread_budget(
    case: str, cm_design: Design, monkeypatch: pytest.MonkeyPatch
) -> None:
    algorithm, params = CM_CASES[case]
    _assert_invariant(cm_design, CM_TRAIN_LAST, algorithm, params, monkeypatch)


@pytest.mark.parametrize("case", sorted(PGM_CASES))
def test_semisynthetic_pgm_forecasts_do_not_depend_on_the_thread_budget(
    case: str, pgm_design: Design, monkeypatch: pytest.MonkeyPatch
) -> None:
    algorithm, params = PGM_CASES[case]
    _assert_invariant(pgm_design, PGM_TRAIN_LAST, algorithm, params, monkeypatch)


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_blas_limit_is_shared_by_overlapping_blocks_and_restored_by_the_last() -> None:
    """Step threads enter and leave in any order: the limit holds until the last one leaves."""
    with threadpool_limits(limits=3, user_api="blas"):
        outer = single_threaded_blas()
        inner = single_threaded_blas()
        outer.__enter__()
        inner.__enter__()
        assert _blas_threads() == {1}
        outer.__exit__(None, None, None)  # the first one in leaves first
        assert _blas_threads() == {1}
        inner.__exit__(None, None, None)
        assert _blas_threads() == {3}


@pytest.mark.parametrize("level", ["cm", "pgm"])
def test_designs_do_not_depend_on_the_thread_budget(
    level: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feature builder computes features and copies rows in the task's threads."""
    if level == "cm":
        path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
        frame = pd.read_parquet(path, columns=["month_id", "country_id", "ged_sb"])
    else:
        frame = pd.read_parquet(shared_data / "pgm_semisynthetic" / "pgm_ged_sb_small.parquet")
    features = CM_FEATURES if level == "cm" else PGM_FEATURES
    designs = []
    for threads in (1, 4):
        monkeypatch.setenv(THREADS_ENV, str(threads))
        designs.append(_panel_design(frame, level, features))
    assert np.array_equal(designs[0].X, designs[1].X, equal_nan=True)
    assert np.array_equal(designs[0].y, designs[1].y)
