"""Our own exceptions as HTTP answers: bad input 422, inconsistent stored state 500, each
with the message that names what is at fault (never a bare traceback)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ewspipe.errors import EwspipeError, InputError

__all__ = ["install_error_handlers"]


async def _ewspipe_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InputError):
        return JSONResponse({"detail": [{"loc": ["query"], "type": "value_error",
                                         "msg": str(exc)}]}, status_code=422)
    return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EwspipeError, _ewspipe_error)
