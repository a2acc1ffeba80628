import json
from pathlib import Path

import pytest

from ewspipe.errors import SettingsError
from ewspipe.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def test_repository_file_equals_defaults():
    """The committed ewspipe.toml documents the defaults; the two must not drift apart."""
    from_file = load_settings(REPO / "ewspipe.toml")
    builtin = load_settings()
    assert from_file.partitions == builtin.partitions
    assert from_file.demo == builtin.demo
    assert from_file.sources == builtin.sources
    assert from_file.state_dir == REPO / ".ewspipe"


def test_relative_state_dir_resolves_against_file(tmp_path):
    cfg = tmp_path / "sub" / "ewspipe.toml"
    cfg.parent.mkdir()
    cfg.write_text('[workspace]\nstate_dir = "st"\n')
    assert load_settings(cfg).state_dir == cfg.parent / "st"
    assert load_settings(str(cfg)).state_dir == cfg.parent / "st"  # a notebook passes a str


def test_env_overrides(tmp_path, monkeypatch):
    cfg = tmp_path / "x.toml"
    cfg.write_text("[demo]\nseed = 7\n")
    monkeypatch.setenv("EWSPIPE_CONFIG", str(cfg))
    monkeypatch.setenv("EWSPIPE_STATE_DIR", str(tmp_path / "elsewhere"))
    s = load_settings()
    assert s.demo.seed == 7 and s.state_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[partitons]\nsteps = 3\n", "partitons"),  # typo'd table
        ("[partitions]\nsteps = 0\n", "[partitions] steps"),
        ("[partitions]\nsequences = 12\n", "need exactly 47"),
        ("[partitions.calibration]\ntrain = [121, 440]\ntest = [445, 492]\n", "train must end"),
        ("[demo]\npgm_cells = 20000\n", "[demo] pgm_cells"),
        ("[demo\nseed = 1\n", "not valid TOML"),
        ("[demo]\nseed = 'abc'\n", "[demo] seed"),
    ],
)
def test_invalid_files_name_the_key(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert needle in str(info.value)
    assert str(cfg) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_tracking_step_metrics_name_exactly_the_metrics_a_run_scores():
    from typing import get_args

    from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS
    from ewspipe.settings import RunMetric

    assert set(get_args(RunMetric)) == set(POINT_METRICS + SAMPLE_METRICS)


NAMES = ["production", "prod..uction", "my branch", "prod.lock", "prod/", "/prod", "prod^2",
         "a~b", "a:b", "a?b", "a*b", "a[b", "a\\b", ".hidden", "a/.b", "a//b", "a@{b", "@",
         "-dash", "release/2024", "feature/x.y", "a.", "tab\there", "ok-name_1", "a/b.lock/c",
         "über"]


@pytest.mark.parametrize("name", NAMES)
def test_branch_names_follow_git(tmp_path, name):
    """The load-time check agrees with `git check-ref-format --branch` on every name."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git_ok = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path,
                            capture_output=True).returncode == 0
    other = "development" if name != "development" else "main"
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(f"[release]\nproduction_branch = {json.dumps(name)}\n"
                   f"development_branch = {json.dumps(other)}\n")
    try:
        load_settings(cfg)
        ours = True
    except SettingsError as exc:
        assert "[release] production_branch" in str(exc)
        ours = False
    assert ours == git_ok, f"{name!r}: git says {git_ok}, ewspipe says {ours}"


def test_settings_errors_name_the_key_as_written(tmp_path):
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[partitions]\nsteps = "36"\n[run]\npublish_environments = ["nowhere"]\n')
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    text = str(info.value)
    assert "[partitions] steps (key partitions.steps): must be an integer, written without" in text
    assert "publish_environments names 'nowhere'" in text and str(cfg) in text
