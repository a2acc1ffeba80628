"""The dashboard: an offline page served by the API app (no CDN, no tile server)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
