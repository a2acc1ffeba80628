"""`--executor` is one option with one parser (ewspipe.executor_spec) for `run`, `evaluate`,
`forecast` and `models sweep`, and for `[run] executor`.

Each command is stopped by a second, cheap bad input that is checked *after* the executor
(an unknown model, a negative lock timeout): an accepted executor value then fails on that,
a refused one fails on `--executor` with the same message in every command. Nothing connects
to a scheduler or starts a cluster here; the connection refusal is tested once, with a short
timeout.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from ewspipe.errors import InputError, SettingsError
from ewspipe.executor_spec import ExecutorSpec, parse_executor
from ewspipe.flows.executors import connect_scheduler, make_executor
from ewspipe.settings import load_settings

LOCF = """\
name = "last_value"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "baseline"
owner = "tests"
description = "LOCF."
features = []
"""

# each command, with a later bad input that only an accepted executor value reaches
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("--lock-timeout", "-1"), "option --lock-timeout"),
    "evaluate": (("--run-type", "calibration", "--model", "no_such_model"), "no_such_model"),
    "forecast": (("--model", "no_such_model"), "no_such_model"),
    "models sweep": (("no_such_model",), "no_such_model"),
}
GOOD = ["local", "dask", "tcp://127.0.0.1:8786", "tls://host:8786"]
BAD = ["tcp://", "http://x", "tcp://host:notaport", ""]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "last_value.toml").write_text(LOCF)
    config = tmp_path / "ewspipe.toml"
    config.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    return config


@pytest.fixture
def cmd(ws: Path, cli):
    def go(command: str, executor: str):
        later, _ = COMMANDS[command]
        return cli("--config", str(ws), *command.split(), "--executor", executor, *later)
    return go


def _executor_line(err: str) -> str:
    return next(line for line in err.splitlines() if "--executor" in line)


@pytest.mark.parametrize("value", BAD)
def test_bad_values_get_the_same_exit_2_and_message_in_every_command(cmd, value):
    expected = f"error: {_message(value)}"
    for command in COMMANDS:
        res = cmd(command, value)
        assert res.code == 2, (command, res.out, res.err)
        assert _executor_line(res.err) == expected, command


def _message(value: str) -> str:
    with pytest.raises(InputError) as exc:
        parse_executor(value)
    text = str(exc.value)
    # the library speaks of executors; the CLI names its option
    assert text.startswith(f"{value!r} is not an executor; use local")
    assert exc.value.parameter == "executor" and "option --" not in text
    assert "tcp://HOST:PORT" in text and "tls" in text  # lists the accepted forms
    return f"option --executor: {text}"


@pytest.mark.parametrize("value", GOOD)
def test_good_values_are_accepted_alike_by_every_command(cmd, value):
    for command, (_, later) in COMMANDS.items():
        res = cmd(command, value)
        assert res.code == 2, (command, res.out, res.err)
        # accepted: the command went on to the later bad input (nothing connected yet)
        assert later in res.err and "--executor" not in res.err, (command, res.err)


@pytest.mark.parametrize(("value", "spec"), [
    ("local", ExecutorSpec("local")),
    ("dask", ExecutorSpec("dask")),
    ("tcp://127.0.0.1:8786", ExecutorSpec("scheduler", "tcp://127.0.0.1:8786")),
    ("tls://host:8786", ExecutorSpec("scheduler", "tls://host:8786")),
    (" TLS://[::1]:8786 ", ExecutorSpec("scheduler", "tls://[::1]:8786")),
    ("10.0.0.5:8786", ExecutorSpec("scheduler", "tcp://10.0.0.5:8786")),  # Dask's default
    ("ws://sched.example:80", ExecutorSpec("scheduler", "ws://sched.example:80")),
])
def test_parsed_specs(value, spec):
    parsed = parse_executor(value)
    assert parsed == spec and parse_executor(parsed) is parsed
    assert parsed.uses_dask is (spec.kind != "local")


@pytest.mark.parametrize("value", ["tcp://host:0", "tcp://host:70000", "tcp://:8786",
                                   "tcp://a b:8786", "inproc://x", "threads", "tcp://::1:8786"])
def test_more_refusals(value):
    with pytest.raises(InputError, match=r"^.* is not an executor") as exc:
        parse_executor(value)
    assert exc.value.parameter == "executor"


def test_run_settings_use_the_same_parser(tmp_path):
    config = tmp_path / "ewspipe.toml"
    config.write_text('[run]\nexecutor = "tls://sched:8786"\n')
    assert load_settings(config).run.executor == "tls://sched:8786"
    config.write_text('[run]\nexecutor = "http://x"\n')
    with pytest.raises(SettingsError) as exc:
        load_settings(config)
    assert "run.executor" in str(exc.value)
    assert "[run] executor: 'http://x' is not an executor; use local" in str(exc.value)


def test_the_factory():
    assert make_executor("local").name == "local"
    lanes = make_executor("local", lanes=True)
    try:
        assert lanes.name == "local"
        assert lanes.submit(max, 1, 2, lane="fit").result() == 2
    finally:
        lanes.close()


def test_an_unreachable_scheduler_is_refused_at_connection_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    needle = re.escape(f"no Dask scheduler answers at {address}")
    with pytest.raises(InputError, match=needle) as exc:
        connect_scheduler(address, timeout="1s")
    assert exc.value.exit_code == 2
