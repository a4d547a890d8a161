"""``GET /metrics``: Prometheus's scrape of this API process (all its uvicorn workers in
multiprocess mode) and of what PostgreSQL knows (api/db_metrics.py).

Like the health endpoints it sits outside /api/v1 and needs no user: Prometheus scrapes with at
most a static bearer token. When ANVIL_METRICS_TOKEN is set, a scrape must send
``Authorization: Bearer <that token>``; the workers' and beat's metrics ports ask for it too.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from anvil.errors import Unauthorized
from anvil.metrics_export import registry, token_accepted
from anvil.settings import get_settings
from api.db_metrics import DatabaseCollector
from api.deps import Busy, database_turn

router = APIRouter(tags=["health"])
DATABASE = DatabaseCollector()


@functools.cache
def _registry() -> Any:
    return registry(extra=[DATABASE])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition format."""
    secret = get_settings().metrics_token
    token = secret.get_secret_value() if secret else None
    if not token_accepted(request.headers.get("authorization"), token):
        raise Unauthorized("the metrics need Authorization: Bearer <ANVIL_METRICS_TOKEN>")
    if DATABASE.stale():
        try:  # a turn at the database like any request: a scrape never starves the others
            async with database_turn():
                await anyio.to_thread.run_sync(DATABASE.refresh)
        except Busy:
            pass  # overloaded: the last reading is served
    body = await anyio.to_thread.run_sync(generate_latest, _registry())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
