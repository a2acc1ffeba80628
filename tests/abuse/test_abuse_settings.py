"""Bad ewspipe.toml values: refused at load with exit 2, naming the file, the key and the fix.

Each case runs ``ewspipe data demo`` (a command that writes a snapshot when the settings are
accepted) so that "nothing written" is a real check. Cases reproduce issue 18: strings and
booleans accepted as numbers, inverted/overlapping partitions and month ids below 1, release
branches that git refuses or that coincide, a tag prefix with a space, publish environments
that do not exist, and settings files that are not UTF-8, unreadable or a folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.abuse.harness import assert_refused, tree_digest

CAL = "[partitions.calibration]\n"
VAL = "[partitions.validation]\n"
REL = "[release]\n"
RUN = "[run]\n"

# (id, settings text, what the message must mention besides the file)
CASES = [
    ("steps-string", '[partitions]\nsteps = "36"\n', ["[partitions] steps", "without quotes"]),
    ("steps-bool", "[partitions]\nsteps = true\n", ["[partitions] steps", "true/false"]),
    ("steps-float", "[partitions]\nsteps = 36.5\n", ["[partitions] steps", "whole number"]),
    ("sequences-string", '[partitions]\nsequences = "13"\n', ["[partitions] sequences"]),
    ("train-inverted", CAL + "train = [444, 121]\ntest = [445, 492]\n",
     ["[partitions.calibration] train", "inverted"]),
    ("test-month-0", CAL + "train = [121, -1]\ntest = [0, 47]\n",
     ["[partitions.calibration] test", ">= 1"]),
    ("train-negative", CAL + "train = [-5, 444]\ntest = [445, 492]\n",
     ["[partitions.calibration] train", ">= 1"]),
    ("month-pair-string", CAL + 'train = [121, "444"]\ntest = [445, 492]\n',
     ["[partitions.calibration] train", "without quotes"]),
    ("validation-overlaps", VAL + "train = [121, 479]\ntest = [480, 527]\n",
     ["[partitions.validation] test", "overlaps"]),
    ("forecasting-first-0", "[partitions.forecasting]\ntrain_first = 0\n",
     ["[partitions.forecasting] train_first"]),
    ("same-branches", REL + 'production_branch = "development"\n',
     ["development_branch", "production_branch", "two different branches"]),
    ("branch-dotdot", REL + 'production_branch = "prod..uction"\n',
     ["[release] production_branch", "'..'", "check-ref-format"]),
    ("branch-space", REL + 'development_branch = "my branch"\n',
     ["[release] development_branch", "' '"]),
    ("branch-lock", REL + 'production_branch = "prod.lock"\n',
     ["[release] production_branch", ".lock"]),
    ("branch-slash", REL + 'production_branch = "prod/"\n', ["[release] production_branch"]),
    ("branch-caret", REL + 'production_branch = "prod^2"\n',
     ["[release] production_branch", "'^'"]),
    ("tag-prefix-space", REL + 'tag_prefix = "v 1"\n', ["[release] tag_prefix", "'v 1'"]),
    ("tag-prefix-colon", REL + 'tag_prefix = "v:"\n', ["[release] tag_prefix"]),
    ("publish-nowhere", RUN + 'publish_environments = ["nowhere"]\n',
     ["publish_environments", "'nowhere'", "publish nothing"]),
    ("environment-unknown", RUN + 'environment = "nowhere"\n',
     ["[run]", "environment = 'nowhere'"]),
    ("environment-path", RUN + 'environments = ["dev/x"]\n', ["[run] environments", "dev/x"]),
    ("demo-countries-bool", "[demo]\ncountries = true\n", ["[demo] countries"]),
    ("api-port-string", '[api]\nport = "8000"\n', ["[api] port", "without quotes"]),
    ("webhook-enabled-string", '[alerts.webhook]\nenabled = "yes"\n',
     ["[alerts.webhook] enabled", "true or false"]),
    ("threshold-string", '[drift.thresholds]\nks_drift = "100"\n',
     ["[drift.thresholds] ks_drift", "a number"]),
    ("lock-timeout-bool", RUN + "lock_timeout_seconds = true\n",
     ["[run] lock_timeout_seconds"]),
    ("memory-budget-unit", RUN + 'memory_budget = "6 gigs"\n',
     ["[run] memory_budget", "'6 gigs'", "6GiB"]),
    ("memory-budget-tiny", RUN + 'memory_budget = "1MiB"\n',
     ["[run] memory_budget", "smallest budget"]),
    ("dask-memory-no-unit", RUN + 'dask_memory_limit = "4G"\n',
     ["[run] dask_memory_limit", "not a memory size", "4GiB"]),
    ("dask-memory-tiny", RUN + 'dask_memory_limit = "64MiB"\n',
     ["[run] dask_memory_limit", "at least 512 MiB"]),
    ("dask-memory-number", RUN + "dask_memory_limit = 4\n", ["[run] dask_memory_limit"]),
    ("dask-workers-negative", RUN + "dask_workers = -2\n", ["[run] dask_workers"]),
    ("dask-workers-string", RUN + 'dask_workers = "2"\n',
     ["[run] dask_workers", "without quotes"]),
    ("geography-table-number", "[geography]\npriogrid_country = 5\n",
     ["[geography] priogrid_country"]),
    ("toml-syntax", "[demo]\nseed = = 1\n", ["not valid TOML", "line 2"]),
]


@pytest.mark.parametrize(("text", "mentions"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_settings_value(ewspipe, tmp_path: Path, text: str, mentions: list[str]) -> None:
    config = tmp_path / "ewspipe.toml"
    config.write_text(text)
    state = tmp_path / "state"
    before = tree_digest(state)
    res = ewspipe("--config", config, "--state-dir", state, "data", "demo", "--json")
    doc = assert_refused(res, code=2, mentions=[str(config), *mentions], before=before,
                         after=tree_digest(state))
    assert doc["kind"] == "SettingsError"
    assert "option --" not in doc["error"]  # a settings value is never blamed on an option


def test_settings_not_utf8(ewspipe, tmp_path: Path) -> None:
    config = tmp_path / "ewspipe.toml"
    config.write_bytes(b"[demo]\n# C\xf4te d'Ivoire\nseed = 1\n")
    before = tree_digest(tmp_path)
    assert_refused(ewspipe("--config", config, "data", "demo", "--json"), code=2,
                   mentions=[str(config), "not UTF-8", "line 2", "save it as UTF-8"],
                   before=before, after=tree_digest(tmp_path))


def test_settings_found_in_cwd_not_utf8(ewspipe, tmp_path: Path) -> None:
    (tmp_path / "ewspipe.toml").write_bytes(b"\xff\xfe[demo]\n")
    before = tree_digest(tmp_path)
    assert_refused(ewspipe("data", "list", "--json"), code=2,
                   mentions=["ewspipe.toml", "UTF-8"], before=before,
                   after=tree_digest(tmp_path))


def test_settings_unreadable(ewspipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ewspipe.toml"
    config.write_text("[demo]\nseed = 1\n")
    config.chmod(0)
    if os.geteuid() == 0:
        # root reads a chmod 000 file: make the read fail as it does for everyone else
        real = Path.read_bytes

        def denied(self: Path) -> bytes:
            if self == config:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    before = tree_digest(tmp_path)
    try:
        assert_refused(ewspipe("--config", config, "data", "demo", "--json"), code=2,
                       mentions=[str(config), "cannot be read", "chmod"], before=before,
                       after=tree_digest(tmp_path))
    finally:
        config.chmod(0o644)


def test_config_is_a_folder(ewspipe, tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    before = tree_digest(tmp_path)
    assert_refused(ewspipe("--config", folder, "data", "demo", "--json"), code=2,
                   mentions=[str(folder), "is a folder", "ewspipe.toml"], before=before,
                   after=tree_digest(tmp_path))


def test_state_dir_env_is_a_file_names_the_variable(ewspipe, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.write_text("x")
    monkeypatch.setenv("EWSPIPE_STATE_DIR", str(state))
    res = ewspipe("data", "demo", "--json")
    doc = assert_refused(res, code=2, mentions=[str(state), "$EWSPIPE_STATE_DIR", "not a folder"])
    assert "--state-dir" not in doc["error"]  # not passed, so not blamed


def test_state_dir_under_a_file(ewspipe, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    before = tree_digest(tmp_path)
    assert_refused(ewspipe("--state-dir", tmp_path / "blocker" / "state", "data", "demo",
                           "--json"), code=2,
                   mentions=[str(tmp_path / "blocker"), "--state-dir"], before=before,
                   after=tree_digest(tmp_path))
