"""Bearer-token guard of the state-changing endpoints.

The token is the value of the environment variable named by ``[api] token_env``, read once
when the app is built. Without it the endpoints stay documented but answer 403 with how to
turn them on; with it a request needs ``Authorization: Bearer <token>`` (compared in constant
time with :func:`hmac.compare_digest`), else 401.
"""

from __future__ import annotations

import hmac
import os

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ewspipe.errors import InputError
from ewspipe.settings import Settings

__all__ = ["MIN_TOKEN_LENGTH", "bearer", "read_token", "require_token"]

MIN_TOKEN_LENGTH = 16
bearer = HTTPBearer(auto_error=False, description="The token in the variable named by "
                    "[api] token_env; state-changing endpoints only.")


def read_token(settings: Settings) -> str | None:
    """The write token, or None (writes off) when the variable is unset or empty.

    Raises:
        InputError: a token shorter than :data:`MIN_TOKEN_LENGTH` characters.
    """
    name = settings.api.token_env
    token = os.environ.get(name, "")
    if not token:
        return None
    if len(token.strip()) < MIN_TOKEN_LENGTH:
        raise InputError(f"environment variable {name}: the API token has {len(token.strip())} "
                         f"characters; use at least {MIN_TOKEN_LENGTH}, e.g. the output of "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return token.strip()


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise 403 when writes are off, 401 unless the bearer token matches."""
    expected: str | None = request.app.state.write_token
    if expected is None:
        name = request.app.state.settings.api.token_env
        raise HTTPException(403, detail=(
            "state-changing endpoints are off: set the environment variable "
            f"{name} ([api] token_env) to a secret token of at least {MIN_TOKEN_LENGTH} "
            "characters, restart `ewspipe serve`, and send it as `Authorization: Bearer "
            "<token>`"))
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, detail="missing or wrong bearer token: send "
                            "`Authorization: Bearer <token>` with the token of "
                            f"{request.app.state.settings.api.token_env}",
                            headers={"WWW-Authenticate": "Bearer"})
