"""Library errors speak domain words; the CLI names the option that gave the bad value."""

from __future__ import annotations

import pytest

from ewspipe.cli.main import error_message, option_name
from ewspipe.drift.check import DriftConfig
from ewspipe.errors import CheckFailed, InputError
from ewspipe.panel.demo import import_demo_world
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.sources.ucdp import ged_url
from ewspipe.settings import DemoSettings, DriftSettings


def test_a_library_message_has_no_option_and_the_cli_names_it(cli) -> None:
    with pytest.raises(InputError) as exc:
        DriftConfig.from_settings(DriftSettings(), "nowcast", "cm")
    assert "option --" not in str(exc.value) and exc.value.parameter == "run_type"
    assert error_message(exc.value) == f"option --run-type: {exc.value}"



def test_a_bad_argument_said_in_domain_words_and_as_the_cli_option(cli, tmp_path) -> None:
    with pytest.raises(InputError) as exc:
        import_demo_world(DemoSettings(), SnapshotStore(tmp_path / "snapshots"), last_month=1)
    assert str(exc.value).startswith("last month 1 is before the first month")
    assert exc.value.parameter == "last_month"
    res = cli("data", "demo", "--last-month", "1", "--json")
    assert res.code == 2 and f"error: option --last-month: {exc.value}" in res.err
    assert res.json()["error"] == f"option --last-month: {exc.value}"  # --json says the same
    assert not (tmp_path / "snapshots").exists()


def test_option_names_and_messages_without_a_parameter() -> None:
    assert option_name("lock_timeout") == "--lock-timeout"
    assert option_name("environment") == "--env"  # the CLI's spelling differs
    assert error_message(InputError("bad file")) == "bad file"
    assert error_message(CheckFailed("gate failed")) == "gate failed"
    with pytest.raises(InputError) as exc:
        ged_url("24")
    assert exc.value.parameter == "version" and not str(exc.value).startswith("option")
