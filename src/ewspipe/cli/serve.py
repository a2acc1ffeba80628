"""`ewspipe serve`: the read API and dashboard over HTTP (uvicorn), on 127.0.0.1 by default.

The socket is bound here, before uvicorn starts, so a bad host or a port in use is a clear
error with exit code 2 instead of a log line from the server.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys

import typer

from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.errors import InputError
from ewspipe.settings import Settings

__all__ = ["serve"]

_BACKLOG = 2048  # uvicorn's default


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    if not host.strip() or any(c.isspace() for c in host):
        raise InputError(f"option --host: {host!r} is not a host name or IP address; use e.g. "
                         "127.0.0.1")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"option --host: cannot resolve {host!r} ({exc}); use an IP address "
                         "of this machine such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _bind(host: str, port: int) -> socket.socket:
    family, address = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, not a live port
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"option --port: port {port} on {host} is already in use; stop "
                             "the other server or pass another --port") from None
        if exc.errno == errno.EACCES:
            raise InputError(f"option --port: not allowed to bind port {port} (ports below "
                             "1024 need privileges); use e.g. --port 8000") from None
        raise InputError(f"option --host: cannot listen on {host} ({exc.strerror or exc}); "
                         "use an address of this machine such as 127.0.0.1") from None
    sock.listen(_BACKLOG)  # connections queue from now on, even before uvicorn accepts
    return sock


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to bind (default [api] host,"
                                    " 127.0.0.1: this machine only)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535,
                                    help="TCP port (default [api] port, 8000)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve the read API (/api/v1, OpenAPI at /docs) and the dashboard until interrupted.

    Read-only unless the variable named by [api] token_env holds a token: then
    POST /api/v1/published/{level}/{target} accepts `Authorization: Bearer <token>`.
    Exit codes: 0 stopped; 2 bad --host, --port in use, or a bad token.
    """
    from ewspipe.extras import require

    uvicorn = require("api", "uvicorn", what="ewspipe serve")
    require("api", "fastapi", what="ewspipe serve")
    from ewspipe.api.app import create_app

    settings: Settings = ctx.obj
    bind_host = settings.api.host if host is None else host
    bind_port = settings.api.port if port is None else port
    app = create_app(settings)
    sock = _bind(bind_host, bind_port)
    address, actual_port = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    doc = {"url": f"http://{shown}:{actual_port}", "host": address, "port": actual_port,
           "docs": f"http://{shown}:{actual_port}/docs",
           "write_enabled": app.state.write_token is not None,
           "token_env": settings.api.token_env}
    writes = ("writes ON (bearer token)" if doc["write_enabled"] else
              f"read-only (set {settings.api.token_env} to enable writes)")
    emit(doc, as_json, lambda: f"serving ewspipe on {doc['url']} (API docs {doc['docs']}; "
         f"{writes}); Ctrl-C stops")
    sys.stdout.flush()
    if not _is_loopback(address):
        typer.echo(f"warning: listening on {address}, reachable from other machines; there is "
                   "no TLS: put a reverse proxy with HTTPS in front", err=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            backlog=_BACKLOG)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: a clean stop
        pass
    finally:
        sock.close()
