"""Rank stability over backtest windows: ranks per window, ties, missing scores."""

import math

import pytest

from ewspipe.evaluation.stability import rank_stability


def test_ranks_means_and_worst_windows():
    scores = {"steady": {"a": 1.0, "b": 2.0, "c": 3.0},
              "lucky": {"a": 0.5, "b": 4.0, "c": 2.0},
              "tied": {"a": 1.0, "b": 5.0, "c": None}}
    out = rank_stability(scores, ["a", "b", "c"])
    assert out["steady"].ranks == {"a": 2, "b": 1, "c": 2}  # ties share the better rank
    assert out["tied"].ranks == {"a": 2, "b": 3, "c": None}
    assert out["lucky"].ranks == {"a": 1, "b": 2, "c": 1}
    assert out["lucky"].mean_rank == pytest.approx(4 / 3) and out["lucky"].worst_rank == 2
    assert out["steady"].mean == pytest.approx(2.0) and out["steady"].worst == 3.0
    assert out["lucky"].worst_window == "b"
    assert out["tied"].mean == pytest.approx(3.0) and out["tied"].worst_rank == 3
    assert list(out) == list(scores)


def test_maximised_metrics_rank_the_largest_first_and_nan_is_unscored():
    out = rank_stability({"x": {"w": 0.9}, "y": {"w": 0.5}, "z": {"w": math.nan}},
                         direction="maximize")
    assert (out["x"].ranks, out["y"].ranks, out["z"].ranks) == (
        {"w": 1}, {"w": 2}, {"w": None})
    assert out["y"].worst == 0.5 and out["z"].mean is None and out["z"].mean_rank is None
