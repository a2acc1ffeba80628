"""Pin every partition boundary: no off-by-one in steps, sequences or windows."""

import pytest

from ewspipe.errors import SettingsError
from ewspipe.partitions import PartitionScheme, RunType, Window
from ewspipe.settings import load_settings


@pytest.fixture
def scheme(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    return load_settings().partition_scheme()


def test_calibration_boundaries(scheme):
    p = scheme.partition(RunType.CALIBRATION)
    assert (p.train.first, p.train.last) == (121, 444)
    assert (p.test.first, p.test.last) == (445, 492)
    assert len(p.test) == 48
    seqs = p.rolling_origins()
    assert len(seqs) == 13
    assert seqs[0].origin == 444 and seqs[-1].origin == 456
    assert list(seqs[0].target_months) == list(range(445, 481))
    assert seqs[-1].target_months[-1] == 492  # the last sequence ends exactly at the window end
    assert all(len(s.target_months) == 36 for s in seqs)
    assert seqs[0].month_of_step(1) == 445 and seqs[0].month_of_step(36) == 480


def test_validation_boundaries(scheme):
    p = scheme.partition("validation")
    assert (p.train.first, p.train.last, p.test.first, p.test.last) == (121, 492, 493, 540)
    seqs = p.rolling_origins()
    assert [s.origin for s in seqs] == list(range(492, 505))
    assert seqs[-1].target_months[-1] == 540


def test_forecasting_from_last_observed(scheme):
    p = scheme.partition(RunType.FORECASTING, last_observed=535)
    assert (p.train.first, p.train.last) == (121, 535)
    assert (p.test.first, p.test.last) == (536, 571)
    (seq,) = p.rolling_origins()
    assert seq.origin == 535 and len(seq.target_months) == 36
    with pytest.raises(ValueError, match="last_observed"):
        scheme.partition(RunType.FORECASTING)


def test_step_out_of_range(scheme):
    seq = scheme.partition("calibration").rolling_origins()[0]
    for bad in (0, 37):
        with pytest.raises(ValueError, match=r"step must be in 1\.\.36"):
            seq.month_of_step(bad)


def test_window_length_must_match_steps_and_sequences():
    with pytest.raises(SettingsError, match="need exactly 48"):
        PartitionScheme(
            calibration=Window(445, 491), validation=Window(493, 540),
            calibration_train_first=121, validation_train_first=121, forecasting_train_first=121,
        )


def test_unknown_run_type(scheme):
    with pytest.raises(ValueError):
        scheme.partition("testing")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"calibration_train_first": 0}, "[partitions.calibration] train starts at month 0"),
    ({"forecasting_train_first": -3}, "[partitions.forecasting] train_first"),
    ({"validation": Window(480, 527)}, "overlaps or precedes"),
])
def test_a_scheme_built_in_code_is_checked_like_the_settings(kwargs, needle):
    base = dict(calibration=Window(445, 492), validation=Window(493, 540),
                calibration_train_first=121, validation_train_first=121,
                forecasting_train_first=121)
    with pytest.raises(SettingsError) as exc:
        PartitionScheme(**{**base, **kwargs})
    assert needle in str(exc.value)
