"""The per-task thread budget: ``$EWSPIPE_THREADS`` caps the step threads of a stepshifter."""

from __future__ import annotations

import os

import pytest

from ewspipe.errors import InputError
from ewspipe.models.stepshifter import _workers
from ewspipe.threads import THREADS_ENV, available_threads


def test_budget_defaults_to_the_cpus_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert available_threads() == len(os.sched_getaffinity(0))


def test_budget_from_the_environment_caps_step_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "1")
    assert available_threads() == 1
    assert _workers(-1, 36) == 1
    assert _workers(4, 36) == 4  # an explicit n_jobs in the model file wins
    monkeypatch.setenv(THREADS_ENV, "3")
    assert _workers(-1, 2) == 2  # never more threads than steps


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_bad_budget_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(THREADS_ENV, raw)
    with pytest.raises(InputError, match=THREADS_ENV):
        available_threads()
