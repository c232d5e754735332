"""Liveness and the database behind it: the only route besides /openapi.json without a key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tally.adapters.postgres.connection import raw_connection
from tally.entrypoints.http.auth import scoped

router = APIRouter(tags=["health"])


@router.get("/v1/health", **scoped(None))
async def health(request: Request) -> dict[str, str]:
    """`ok` when the API reaches its database."""
    async with raw_connection(request.app.state.engine) as conn:
        await conn.fetchval("SELECT 1")
    return {"status": "ok"}
