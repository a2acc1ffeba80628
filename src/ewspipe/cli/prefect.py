"""`ewspipe prefect`: the monthly run as a Prefect flow (optional extra ``ewspipe[prefect]``).

Prefect is imported only when one of these commands runs; without it they exit 2 with the
install hint.
"""

from __future__ import annotations

from typing import Any

import typer

from ewspipe.cli.choices import ENVIRONMENTS
from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.errors import InputError
from ewspipe.flows.prefect_flow import FLOW_NAME, deploy_monthly, require_prefect

__all__ = ["app"]

app = typer.Typer(help="Run or schedule the monthly run with Prefect (pip install "
                       "'ewspipe[prefect]').", no_args_is_help=True,
                  rich_markup_mode=None)


def _check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise InputError(f"option --cron: {cron!r} is not a valid cron expression; e.g. "
                         f"\"0 6 5 * *\" (06:00 on the 5th of each month) ({exc})") from None


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    cron: str = typer.Option("0 6 5 * *", "--cron", help="Schedule (cron, UTC); default "
                             "06:00 on the 5th of each month."),
    name: str = typer.Option("monthly", "--name", help="Deployment name."),
    work_pool: str | None = typer.Option(None, "--work-pool", help="Work pool whose workers "
                                         "run it (default: none; serve it with a runner)."),
    env: str | None = typer.Option(None, "--env", help="Environment of the scheduled runs "
                                   f"({ENVIRONMENTS}; default [run] environment)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create (or update) the deployment `ewspipe-monthly/<name>` on the Prefect server of
    the active profile (PREFECT_API_URL), on the --cron schedule, with this workspace's
    settings file and state directory as parameters.

    Exit codes: 0 created; 2 bad option, Prefect not installed or no server.
    """
    settings = ctx.obj
    require_prefect()
    _check_cron(cron)
    parameters: dict[str, Any] = {
        "config": str(settings.source_file.resolve()) if settings.source_file else None,
        "state_dir": str(settings.state_dir.resolve()),
        "environment": env,
    }
    try:
        deployment_id = deploy_monthly(name=name, cron=cron, work_pool=work_pool,
                                       parameters=parameters)
    except (OSError, RuntimeError) as exc:  # httpx errors are OSError / RuntimeError kin
        raise InputError(f"could not create the deployment on the Prefect server ({exc}); "
                         "check PREFECT_API_URL (`prefect config view`)") from exc
    doc = {"deployment": f"{FLOW_NAME}/{name}", "id": deployment_id, "cron": cron,
           "work_pool": work_pool, "parameters": parameters}
    emit(doc, as_json, lambda: f"deployment {doc['deployment']} ({deployment_id}) scheduled "
         f"\"{cron}\"; parameters {parameters}")
