"""Entry point: global options, sub-command groups, and error -> exit code mapping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ewspipe import __version__
from ewspipe.cli import alerts as alerts_cli
from ewspipe.cli import data as data_cli
from ewspipe.cli import drift as drift_cli
from ewspipe.cli import forecasts as forecasts_cli
from ewspipe.cli import models as models_cli
from ewspipe.cli import online as online_cli
from ewspipe.cli import partitions as partitions_cli
from ewspipe.cli import prefect as prefect_cli
from ewspipe.cli import qa as qa_cli
from ewspipe.cli import release as release_cli
from ewspipe.cli import run as run_cli
from ewspipe.cli import runs as runs_cli
from ewspipe.cli import serve as serve_cli
from ewspipe.errors import EwspipeError, InputError
from ewspipe.settings import load_settings

__all__ = ["app", "error_message", "main", "option_name"]

app = typer.Typer(
    name="ewspipe",
    help="Conflict early-warning pipeline: data, models, evaluation, releases.",
    no_args_is_help=True,
    add_completion=False,
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
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="State directory (overrides ewspipe.toml and $EWSPIPE_STATE_DIR)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = load_settings(config, state_dir=state_dir)


# library argument -> CLI option, where the option is not the argument with dashes
_OPTIONS = {"environment": "env"}


def option_name(parameter: str) -> str:
    """The CLI option that sets the library argument ``parameter`` (``run_type`` ->
    ``--run-type``, ``environment`` -> ``--env``)."""
    return "--" + _OPTIONS.get(parameter, parameter).replace("_", "-")


def error_message(exc: EwspipeError) -> str:
    """The message the CLI prints: a library :class:`InputError` about one of its arguments
    is said about the option that set it (``option --run-type: unknown run type ...``)."""
    parameter = exc.parameter if isinstance(exc, InputError) else None
    return f"option {option_name(parameter)}: {exc}" if parameter else str(exc)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 check failed, 2 bad input or usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="ewspipe", standalone_mode=False)
    except EwspipeError as exc:
        if as_json:
            doc = {"error": error_message(exc), "kind": type(exc).__name__,
                   "exit_code": exc.exit_code}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        typer.echo(f"error: {error_message(exc)}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command, bad option, ...
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
    # with standalone_mode=False a command's `raise typer.Exit(code)` arrives as the result
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
