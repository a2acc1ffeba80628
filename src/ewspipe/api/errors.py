"""Our own exceptions as HTTP answers: bad input 422, damaged or inconsistent stored state
503 (the service cannot answer from it until the file named is repaired), anything else of
ours 500, each with the message that names what is at fault and how to fix it (never a bare
traceback); and the 422/404 answers routes raise naming the parameter at fault.

A state-changing request (POST, PUT, PATCH, DELETE) is checked for its token before its
body: FastAPI parses and validates the body before any dependency runs, so without the
handler below an unauthenticated caller with a malformed body would get 422 (and learn the
body's schema) instead of 401/403."""

from __future__ import annotations

from typing import NoReturn

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ewspipe.api.auth import bearer, require_token
from ewspipe.errors import EwspipeError, InputError, StoreError

__all__ = ["ParamError", "install_error_handlers", "invalid", "not_found"]


async def _ewspipe_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InputError):
        return JSONResponse({"detail": [{"loc": ["query"], "type": "value_error",
                                         "msg": str(exc)}]}, status_code=422)
    if isinstance(exc, StoreError):
        return JSONResponse({"detail": f"stored state is damaged: {exc}"}, status_code=503)
    return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=500)


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _validation_error(request: Request, exc: Exception) -> Response:
    """A 422 for a state-changing request only once its token is right (else 401/403)."""
    assert isinstance(exc, RequestValidationError)
    if request.method not in _READS:
        try:
            require_token(request, await bearer(request))
        except HTTPException as denied:
            return await http_exception_handler(request, denied)
    return await request_validation_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EwspipeError, _ewspipe_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


class ParamError(HTTPException):
    """A 422 shaped like FastAPI's own validation errors: ``detail[0].loc`` names the
    parameter and ``msg`` says what is wrong and how to fix it."""

    def __init__(self, where: str, name: str, message: str) -> None:
        super().__init__(422, detail=[{"loc": [where, name], "type": "value_error",
                                       "msg": f"{where} parameter '{name}': {message}"}])


def invalid(where: str, name: str, message: str) -> NoReturn:
    raise ParamError(where, name, message)


def not_found(where: str, name: str, message: str) -> NoReturn:
    raise HTTPException(404, detail=f"{where} parameter '{name}': {message}")
