"""Entry point: global options, sub-command groups, and error -> exit code mapping."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import typer

from ewspipe import __version__
from ewspipe.cli import alerts as alerts_cli
from ewspipe.cli import data as data_cli
from ewspipe.cli import drift as drift_cli
from ewspipe.cli import forecasts as forecasts_cli
from ewspipe.cli import init as init_cli
from ewspipe.cli import mlflow_ui as mlflow_ui_cli
from ewspipe.cli import models as models_cli
from ewspipe.cli import online as online_cli
from ewspipe.cli import partitions as partitions_cli
from ewspipe.cli import prefect as prefect_cli
from ewspipe.cli import qa as qa_cli
from ewspipe.cli import release as release_cli
from ewspipe.cli import run as run_cli
from ewspipe.cli import runs as runs_cli
from ewspipe.cli import serve as serve_cli
from ewspipe.errors import EwspipeError, InputError, StoreError
from ewspipe.settings import load_settings

__all__ = ["INTERNAL_ERROR_EXIT", "app", "error_message", "main", "option_name"]

# rich_markup_mode=None on every Typer app: Rich markup would eat bracketed words of the help
# (`ewspipe[prefect]`, `[api] port`); tests/cli/test_help.py checks every command
app = typer.Typer(
    rich_markup_mode=None,
    name="ewspipe",
    help="Conflict early-warning pipeline: data, models, evaluation, releases.",
    no_args_is_help=True,
    add_completion=True,
    # inherited by every sub-command's context: `-h` works wherever `--help` does
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(drift_cli.app, name="drift")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(models_cli.app, name="models")
app.command("partitions")(partitions_cli.partitions)
app.add_typer(runs_cli.evaluate_app, name="evaluate")
app.command("forecast")(runs_cli.forecast)
app.command("online-eval")(online_cli.online_eval_command)
app.add_typer(qa_cli.app, name="qa")
app.command("run")(run_cli.run)
app.add_typer(forecasts_cli.app, name="forecasts")
app.add_typer(prefect_cli.app, name="prefect")
app.add_typer(release_cli.app, name="release")
app.command("serve")(serve_cli.serve)
app.command("init")(init_cli.init)
app.command("mlflow-ui")(mlflow_ui_cli.mlflow_ui)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ewspipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Settings file (default: $EWSPIPE_CONFIG or ./ewspipe.toml)."
    ),
    state_dir: str | None = typer.Option(
        None, "--state-dir", help="State directory (overrides ewspipe.toml and $EWSPIPE_STATE_DIR)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    if _SESSION.get("help"):  # help needs no settings: a broken ewspipe.toml must not hide it
        ctx.obj = None
        return
    if state_dir is not None and not state_dir.strip():
        # Path("") is the working directory: state would land in the workspace itself
        raise InputError("option --state-dir: the path is empty; name a folder, e.g. "
                         "--state-dir .ewspipe")
    ctx.obj = load_settings(config, state_dir=None if state_dir is None else Path(state_dir))
    _SESSION["state_dir"] = ctx.obj.state_dir
    _require_writable(ctx.obj.state_dir, str(_SESSION.get("command", "")))


# the state folder and command path of the current call (main() resets it), for the
# writability check and the last-resort OSError message
_SESSION: dict[str, Any] = {}

#: commands that write into the state folder: refused up front when it is read-only, so a
#: read-only folder is one clear message rather than a failure half-way through
WRITERS = ("run", "forecast", "data import", "data demo", "data pull")


def _require_writable(state_dir: Path, command: str) -> None:
    if not any(command == w or command.startswith(w + " ") for w in WRITERS):
        return
    folder = next((p for p in (state_dir, *state_dir.parents) if p.exists()), None)
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        where = "" if folder == state_dir else f" (it would be created in {folder})"
        raise InputError(f"the state folder {state_dir} is not writable{where}, and "
                         f"'ewspipe {command}' writes there: make it writable or choose "
                         "another --state-dir")


def _command_path(command: object, args: list[str]) -> str:
    """The sub-command path ``args`` name (``data import panel``), global options skipped."""
    path: list[str] = []
    skip = False
    for token in args:
        if skip:
            skip = False
            continue
        if token.startswith("-"):
            skip = not path and token in ("--config", "--state-dir")
            continue
        commands = getattr(command, "commands", None)
        if not commands or token not in commands:
            break
        path.append(token)
        command = commands[token]
    return " ".join(path)


#: exit code of an unexpected exception (a bug): EX_SOFTWARE of sysexits.h
INTERNAL_ERROR_EXIT = 70
DEBUG_ENV = "EWSPIPE_DEBUG"

# library argument -> CLI option, where the option is not the argument with dashes
_OPTIONS = {"environment": "env"}


def option_name(parameter: str) -> str:
    """The CLI option that sets the library argument ``parameter`` (``run_type`` ->
    ``--run-type``, ``environment`` -> ``--env``)."""
    return "--" + _OPTIONS.get(parameter, parameter).replace("_", "-")


def _passed(option: str, argv: list[str]) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def error_message(exc: EwspipeError, argv: list[str] | None = None) -> str:
    """The message the CLI prints: a library :class:`InputError` about one of its arguments
    is said about the option that set it (``option --run-type: unknown run type ...``).

    With ``argv`` (the command line), the option is named only when the user passed it: a
    value that came from ewspipe.toml or a default must not be blamed on an option."""
    parameter = exc.parameter if isinstance(exc, InputError) else None
    if not parameter:
        return str(exc)
    option = option_name(parameter)
    if argv is not None and not _passed(option, argv):
        return str(exc)
    return f"option {option}: {exc}"


def _emit_error(message: str, kind: str, code: int, as_json: bool, **extra: object) -> int:
    """One JSON document on stdout with --json; always the message on stderr."""
    if as_json:
        doc = {"error": message, "kind": kind, "exit_code": code, **extra}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    typer.echo(f"error: {message}", err=True)
    return code


def _usage_error(exc: typer.TyperException, as_json: bool) -> int:
    """Option parsing failed: click's usage text on stderr, or one JSON document."""
    code = int(getattr(exc, "exit_code", 2))
    param: Any = getattr(exc, "param", None)
    helptext = getattr(param, "help", None)
    option = (param.opts[-1] if getattr(param, "opts", None) else getattr(param, "name", None))
    show = getattr(exc, "show", None)
    if not as_json and callable(show):
        show()
        if helptext:  # the accepted form, as the option's help states it
            typer.echo(f"{option}: {helptext}", err=True)
        return code
    ctx = getattr(exc, "ctx", None)
    fmt = getattr(exc, "format_message", None)
    message = fmt() if callable(fmt) else str(exc)
    extra: dict[str, object] = {}
    if helptext:  # the accepted form, as the option's help states it
        extra["option"] = option
        message += f"; {option}: {helptext}"
    if ctx is not None:
        extra["usage"] = ctx.get_usage().removeprefix("Usage: ").strip()
        message += f" (see `{ctx.command_path} --help`)"
    return _emit_error(message, "UsageError", code, as_json, **extra)


def _os_error_message(exc: OSError) -> str:
    """Name the path and the fix; a path in the state folder is the state folder's fault."""
    path = exc.filename
    what = exc.strerror or type(exc).__name__
    if path is None:
        return f"{what}; check the files and folders this command uses ({exc})"
    state_dir = _SESSION.get("state_dir")
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        inside = state_dir is not None and (
            Path(path) == state_dir or state_dir in Path(path).parents)
        if inside:
            return (f"cannot write {path}: {what}. The state folder {state_dir} is not "
                    "writable: make it writable or choose another --state-dir")
        return f"cannot access {path}: {what}; check its permissions"
    if exc.errno == errno.ENOSPC:
        return f"cannot write {path}: {what}; free some space and re-run"
    return f"cannot use {path}: {what}; check the path (does every folder on it exist, " \
           "and is it a folder where one is expected?)"


def _damaged_database(exc: sqlite3.DatabaseError) -> str:
    where = _SESSION.get("state_dir")
    if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, cannot open
        return (f"a state database (state.db) under {where} cannot be used ({exc}); check that "
                "the folder is writable and no other process holds the database, or choose "
                "another --state-dir")
    return (f"a state database (state.db) under {where} is damaged ({exc}); move the damaged "
            "file aside or restore it from a backup, then re-run")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 check failed, 2 bad input or usage,
    70 an internal error: a bug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    _SESSION.clear()
    command = typer.main.get_command(app)
    _SESSION["command"] = _command_path(command, args)
    options = args[:args.index("--")] if "--" in args else args
    _SESSION["help"] = any(a in ("-h", "--help") for a in options)
    try:
        result = command.main(args=args, prog_name="ewspipe", standalone_mode=False)
    except EwspipeError as exc:
        return _emit_error(error_message(exc, args), type(exc).__name__, exc.exit_code,
                           as_json)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command, bad option, ...
        return _usage_error(exc, as_json)
    except Exception as exc:  # the last resort: no traceback reaches the user
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(exc, OSError):
            return _emit_error(_os_error_message(exc), type(exc).__name__, 2, as_json,
                               path=exc.filename)
        if isinstance(exc, sqlite3.DatabaseError):
            return _emit_error(_damaged_database(exc), "StoreError", StoreError.exit_code,
                               as_json)
        message = (f"internal error: {type(exc).__name__}: {exc}; this is a bug - re-run with "
                   f"{DEBUG_ENV}=1 for the traceback")
        return _emit_error(message, "InternalError", INTERNAL_ERROR_EXIT, as_json)
    # with standalone_mode=False a command's `raise typer.Exit(code)` arrives as the result
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
