"""Response compression that honours the client's Accept-Encoding q-values.

Starlette's GZipMiddleware compresses whenever the header contains "gzip", so a client that
sent ``identity, gzip;q=0`` (RFC 9110 12.5.3: gzip not acceptable) still got gzip.
"""

from __future__ import annotations

from fastapi.middleware.gzip import GZipMiddleware
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

__all__ = ["QGZipMiddleware", "accepts_gzip"]


def accepts_gzip(header: str) -> bool:
    """True when an Accept-Encoding header allows gzip: listed, or ``*``, with a q-value
    above 0."""
    weights: dict[str, float] = {}
    for item in header.lower().split(","):
        coding, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding.strip():
            weights[coding.strip()] = q
    return weights.get("gzip", weights.get("*", 0.0)) > 0


class QGZipMiddleware(GZipMiddleware):
    """GZipMiddleware, bypassed when the client's header does not accept gzip."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not accepts_gzip(
                Headers(scope=scope).get("Accept-Encoding", "")):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
