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


def test_backtest_windows_repeat_the_protocol_before_validation(scheme):
    windows = scheme.backtest()
    assert [p.window for p in windows] == ["2005-2008", "2009-2012", "2013-2016", "2017-2020"]
    assert [(p.test.first, p.test.last) for p in windows] == [
        (301, 348), (349, 396), (397, 444), (445, 492)]
    for p in windows:
        assert p.run_type is RunType.BACKTEST
        assert (p.train.first, p.train.last) == (121, p.test.first - 1)
        assert len(p.rolling_origins()) == 13 and p.steps == 36
        assert p.rolling_origins()[-1].target_months[-1] == p.test.last
    cal = scheme.partition("calibration")  # the last window is calibration's
    assert (windows[-1].train, windows[-1].test) == (cal.train, cal.test)
    assert cal.window is None
    with pytest.raises(ValueError, match=r"backtest\(\)"):
        scheme.partition("backtest")


def test_a_window_off_calendar_years_is_labelled_by_months():
    from ewspipe.partitions import window_label
    assert window_label(Window(303, 350)) == "2005-03..2009-02"


@pytest.mark.parametrize(("firsts", "needle"), [
    ((), "is empty"),
    ((349, 301), "not strictly increasing"),
    ((301, 301), "not strictly increasing"),
    ((121, 301), "leaves no training month"),
    ((301, 446), "into [partitions.validation] test"),
])
def test_bad_backtest_windows_name_the_key_and_the_fix(firsts, needle):
    bad = PartitionScheme(calibration=Window(445, 492), validation=Window(493, 540),
                          calibration_train_first=121, validation_train_first=121,
                          forecasting_train_first=121, backtest_test_firsts=firsts)
    with pytest.raises(SettingsError) as exc:
        bad.backtest()
    assert "[partitions.backtest] test_firsts" in str(exc.value) and needle in str(exc.value)


def test_backtest_settings_are_checked_when_written_and_when_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    config = tmp_path / "ewspipe.toml"
    config.write_text("[partitions.backtest]\ntest_firsts = [301, 470]\n")
    with pytest.raises(SettingsError, match=r"ewspipe.toml.*must be <= 445"):
        load_settings()
    config.write_text("[partitions.backtest]\ntest_firsts = [349, 397]\n")
    assert [p.window for p in load_settings().partition_scheme().backtest()] == [
        "2009-2012", "2013-2016"]
    # the default windows do not refuse a file that never asks for a backtest ...
    config.write_text("[partitions.calibration]\ntrain = [301, 444]\ntest = [445, 492]\n")
    scheme = load_settings().partition_scheme()
    # ... but a backtest on it says what to set
    with pytest.raises(SettingsError, match="must be >= 302"):
        scheme.backtest()


def test_a_forecasting_train_first_after_the_data_names_the_key():
    """Was "month window [99999999, 535] is empty", naming neither the key nor the fix."""
    scheme = PartitionScheme(calibration=Window(445, 492), validation=Window(493, 540),
                             calibration_train_first=121, validation_train_first=121,
                             forecasting_train_first=99_999_999)
    with pytest.raises(SettingsError, match=r"\[partitions.forecasting\] train_first = "
                       r"99999999 comes after the last observed month 535.*<= 535"):
        scheme.partition(RunType.FORECASTING, last_observed=535)
    assert scheme.partition(RunType.CALIBRATION).train == Window(121, 444)  # others unaffected
