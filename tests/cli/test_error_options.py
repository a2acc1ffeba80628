"""Library errors speak domain words; the CLI names the option that gave the bad value."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_an_option_the_user_did_not_pass_is_never_blamed() -> None:
    exc = InputError("environment 'x' is not an environment", parameter="environment")
    assert error_message(exc, ["run", "--env", "x"]) == f"option --env: {exc}"
    assert error_message(exc, ["run", "--env=x"]) == f"option --env: {exc}"
    assert error_message(exc, ["run", "--json"]) == str(exc)  # the value came from settings


# --------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize(("args", "option", "accepted"), [
    (["forecasts", "query", "--level", "cm", "--model", "x", "--month", "2024-01"], "--month",
     "month_id"),
    (["alerts", "list", "--limit", "0"], "--limit", "greater than or equal to 1"),
    (["serve", "--port", "70000"], "--port", "less than or equal to 65535"),
    (["frobnicate"], "frobnicate", "ewspipe --help"),
    (["data", "list", "--bogus"], "--bogus", "ewspipe data list --help"),
    (["data", "show"], "snapshot", "ewspipe data show --help"),
])
def test_usage_errors_with_json_are_one_document(cli, args, option, accepted) -> None:
    res = cli(*args, "--json")
    assert res.code == 2
    doc = res.json()  # exactly one document, no usage text on stdout
    assert doc["kind"] == "UsageError" and doc["exit_code"] == 2
    assert option in doc["error"] and accepted in doc["error"]
    assert "usage" in doc and "Traceback" not in res.err
    plain = cli(*args)  # without --json: click's usage text on stderr, nothing on stdout
    assert plain.code == 2 and plain.out == "" and "Usage: " in plain.err


# --------------------------------------------------------------------------- last resort

def test_an_os_error_in_the_state_folder_names_it_and_the_fix(cli, state_dir, monkeypatch
                                                             ) -> None:
    from ewspipe.panel import snapshot

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(state_dir / "snapshots" / "x"))

    monkeypatch.setattr(snapshot.SnapshotStore, "write", denied)  # a read-only state folder
    res = cli("data", "demo", "--countries", "10", "--pgm-cells", "50", "--last-month", "160",
              "--json")
    assert res.code == 2, res.err
    doc = res.json()
    assert doc["kind"] == "PermissionError" and doc["path"].endswith("x")
    assert str(state_dir) in doc["error"] and "choose another --state-dir" in doc["error"]


def test_an_unexpected_exception_is_an_internal_error_not_a_traceback(cli, monkeypatch
                                                                      ) -> None:
    from ewspipe.cli import alerts as alerts_cli

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(alerts_cli, "AlertLog", broken, raising=True)
    res = cli("alerts", "list", "--json")
    assert res.code == 70 and "Traceback" not in res.out + res.err
    doc = res.json()
    assert doc["kind"] == "InternalError" and doc["exit_code"] == 70
    assert "internal error: KeyError" in doc["error"] and "EWSPIPE_DEBUG=1" in doc["error"]
    monkeypatch.setenv("EWSPIPE_DEBUG", "1")
    with pytest.raises(KeyError):  # the traceback, for the developer who asks for it
        cli("alerts", "list", "--json")


@pytest.mark.parametrize("args", [
    ["run"], ["data", "demo"], ["data", "import", "panel", "x.csv", "--level", "cm"],
])
def test_a_read_only_state_folder_is_refused_before_writing(cli, state_dir, monkeypatch, args
                                                             ) -> None:
    """Root ignores permissions, so the check's view of the folder is simulated here; the
    CLI-wide abuse test chmods a real folder where permissions bind."""
    state_dir.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if (
        Path(p) == state_dir and mode & os.W_OK) else real(p, mode))
    res = cli(*args, "--json")
    assert res.code == 2
    doc = res.json()
    assert str(state_dir) in doc["error"] and "not writable" in doc["error"]
    assert "make it writable or choose another --state-dir" in doc["error"]
    assert list(state_dir.iterdir()) == []  # nothing written
    assert cli("data", "list", "--json").code == 0  # reading a read-only folder is fine
