"""Baselines on a tiny hand-made design whose expected values are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ewspipe.errors import SpecError
from ewspipe.features.design import Design
from ewspipe.models.baselines import Average, Conflictology, Locf, LogAverage, Zero
from ewspipe.panel.schema import Level

# month -> {unit: y}. Unit 3 enters at 104; unit 4 leaves after 103; unit 2 has a NaN at 103.
TABLE = {
    101: {1: 0.0, 2: 10.0, 4: 7.0},
    102: {1: 2.0, 2: 0.0, 4: 7.0},
    103: {1: 4.0, 2: np.nan, 4: 7.0},
    104: {1: 6.0, 2: 0.0, 3: 3.0},
    105: {1: 8.0, 2: 5.0, 3: 1.0},
    106: {1: 1e6, 2: 1e6, 3: 1e6},  # after the origin: must never be read
}
ORIGIN = 105


def tiny_design(table: dict[int, dict[int, float]] = TABLE) -> Design:
    rows = [(m, u, y) for m, units in sorted(table.items()) for u, y in sorted(units.items())]
    months, units, y = (np.array(col) for col in zip(*rows, strict=True))
    return Design(Level.CM, "country_id", "ged_sb", months.astype(np.int64),
                  units.astype(np.int64), y.astype(np.float64), np.zeros((len(rows), 1)),
                  ("f",))


def point_by_unit(model, steps=(1, 2, 3)) -> dict[int, list[float]]:
    design = tiny_design()
    fc = model.fit(design, train_last=104).predict(design, origin=ORIGIN, steps=list(steps))
    out: dict[int, list[float]] = {}
    for unit, value in zip(fc.frame["country_id"], fc.point, strict=True):
        out.setdefault(int(unit), []).append(float(value))
    return out


def test_zero() -> None:
    assert point_by_unit(Zero()) == {1: [0.0] * 3, 2: [0.0] * 3, 3: [0.0] * 3}


def test_locf_is_the_value_at_the_origin_for_every_step() -> None:
    assert point_by_unit(Locf()) == {1: [8.0] * 3, 2: [5.0] * 3, 3: [1.0] * 3}


def test_average_over_the_last_w_months() -> None:
    got = point_by_unit(Average(w=3))
    assert got[1] == pytest.approx([6.0] * 3)  # (4 + 6 + 8) / 3
    assert got[2] == pytest.approx([2.5] * 3)  # (0 + 5) / 2: the NaN of 103 is skipped
    assert got[3] == pytest.approx([2.0] * 3)  # (3 + 1) / 2: only two months in the panel
    assert 4 not in got  # not present at the origin: not in the entity set


def test_average_window_of_one_is_locf() -> None:
    assert point_by_unit(Average(w=1)) == point_by_unit(Locf())


def test_log_average_is_expm1_of_mean_log1p() -> None:
    got = point_by_unit(LogAverage(w=2))
    assert got[1] == pytest.approx([np.sqrt(7 * 9) - 1] * 3)  # expm1((log 7 + log 9) / 2)
    assert got[2] == pytest.approx([np.sqrt(1 * 6) - 1] * 3)
    assert got[3] == pytest.approx([np.sqrt(4 * 2) - 1] * 3)


def test_conflictology_draws_from_the_units_own_recent_history() -> None:
    design = tiny_design()
    model = Conflictology(w=2, n_samples=400, seed=1).fit(design, train_last=104)
    fc = model.predict(design, origin=ORIGIN, steps=[1, 2])
    assert fc.n_samples == 400
    allowed = {1: {6.0, 8.0}, 2: {0.0, 5.0}, 3: {3.0, 1.0}}
    for unit, row, point in zip(fc.frame["country_id"], fc.samples, fc.point, strict=True):
        assert set(np.unique(row)) == allowed[int(unit)]  # both values drawn, nothing else
        assert point == pytest.approx(row.mean())
        assert 0.35 < np.mean(row == max(allowed[int(unit)])) < 0.65  # with replacement, ~1/2
    step1, step2 = fc.samples[:3], fc.samples[3:]
    assert not np.array_equal(step1, step2)  # fresh draws per step


def test_conflictology_seed_changes_draws_and_same_seed_repeats() -> None:
    design = tiny_design()

    def draw(seed: int) -> np.ndarray:
        return Conflictology(w=3, n_samples=50, seed=seed).fit(design, train_last=104) \
            .predict(design, origin=ORIGIN).samples

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_a_unit_without_any_observed_target_in_the_window_is_an_error() -> None:
    table = {**TABLE, 105: {**TABLE[105], 2: np.nan}, 104: {**TABLE[104], 2: np.nan}}
    design = tiny_design(table)
    wide = Average(w=5).fit(design, train_last=104).predict(design, origin=ORIGIN, steps=[1])
    assert wide.point[1] == pytest.approx(5.0)  # unit 2: (10 + 0) / 2 from months 101-102
    # months 103..105 are all NaN for unit 2: nothing to average, an error naming the unit
    with pytest.raises(ValueError, match=r"months 103\.\.105 \(first: country_id 2\)"):
        Average(w=3).fit(design, train_last=104).predict(design, origin=ORIGIN)
    with pytest.raises(ValueError, match="country_id 2"):
        Locf().fit(design, train_last=104).predict(design, origin=ORIGIN)


@pytest.mark.parametrize(
    ("cls", "params", "match"),
    [
        (Average, {"w": 0}, r"hyperparameter 'w' of algorithm 'average' must be an integer >= 1; "
                            r"got 0"),
        (LogAverage, {"w": 2.5}, r"'w' .* got 2.5"),
        (Conflictology, {"n_samples": True}, r"'n_samples' .* got True"),
        (Conflictology, {"seed": -1}, r"'seed' .* >= 0; got -1"),
        (Zero, {"w": 3}, r"unknown hyperparameter 'w' for algorithm 'zero'"),
    ],
)
def test_bad_hyperparameters_name_key_and_value(cls, params, match) -> None:
    with pytest.raises(SpecError, match=match):
        cls.check_params(params)


def test_bad_hyperparameters_fail_in_fit_not_init() -> None:
    model = Average(w=-3)  # __init__ only stores
    assert model.w == -3
    with pytest.raises(SpecError, match="'w'"):
        model.fit(tiny_design(), train_last=104)


@pytest.mark.parametrize("model", [Zero(), Locf(), Average(w=2), LogAverage(w=2),
                                   Conflictology(w=2, n_samples=5, seed=1)],
                         ids=lambda m: type(m).__name__)
def test_a_baseline_reads_no_design_row_before_its_first_design_month(model) -> None:
    """A run builds the design from first_design_month(train_last) on; origins are train_last
    or later, and every forecast is the same as from the whole design."""
    design = tiny_design({m: {1: float(m - 100), 2: 2.0 * (m - 100)} for m in range(101, 111)})
    train_last = 106
    first = model.first_design_month(train_last)
    assert first == train_last - getattr(model, "w", 1) + 1
    cut = slice(int(np.searchsorted(design.months, first)), None)
    tail = Design(design.level, design.unit_column, design.target, design.months[cut],
                  design.units[cut], design.y[cut], design.X[cut], design.feature_names)
    for origin in (train_last, train_last + 2):
        a = type(model)(**model.get_params()).fit(design, train_last=train_last)
        b = type(model)(**model.get_params()).fit(tail, train_last=train_last)
        fa = a.predict(design, origin=origin, steps=[1, 2])
        fb = b.predict(tail, origin=origin, steps=[1, 2])
        np.testing.assert_array_equal(fa.point, fb.point)
        np.testing.assert_array_equal(fa.samples, fb.samples)
