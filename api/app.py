"""The ASGI app: ``uvicorn api.app:app`` (``anvil api`` runs it)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from anvil import __version__
from api import openapi, problems, ui
from api.http_metrics import HttpMetrics
from api.input_guard import InputGuard
from api.routes import (
    auth,
    executions,
    health,
    manual,
    metrics,
    quarantine,
    queues,
    results,
    rules,
    schedules,
    secrets,
    stats,
    test_cases,
    test_suites,
    tests,
    tokens,
    users,
    webhooks,
    workers,
    workspaces,
)


class BodyLimit:
    """Refuses request bodies above ``limit`` bytes with 413, whether or not Content-Length is sent.

    ``paths`` give some paths a limit of their own (an imported report may be larger than a JSON body).
    """

    def __init__(self, app: Any, limit: int, paths: dict[str, int] | None = None) -> None:
        self.app, self.default, self.paths = app, limit, paths or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.paths.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                return await self._refuse(scope, receive, send, limit)
            # The server never delivers more than the declared length.
            return await self.app(scope, receive, send)
        # No length declared (chunked): read the body, up to the limit, before the app sees it.
        # An error raised while FastAPI reads a body would reach the client as a 400, not a 413.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self._refuse(scope, receive, send, limit)
            if not message.get("more_body", False):
                break
        first: list[Any] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Any:
            # The buffered body once, then the real channel (which reports a disconnect).
            return first.pop() if first else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any, limit: int) -> None:
        response = problems.problem(
            413, "Request body too large", f"request bodies may be at most {limit} bytes", field="body"
        )
        await response(scope, receive, send)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    from anvil.settings import get_settings

    # Threads for blocking work (sync endpoints and dependencies, event streams' reads); the
    # database pool is sized from the same setting (db/session.py, api/deps.py).
    anyio.to_thread.current_default_thread_limiter().total_tokens = get_settings().api_threads
    # A stopped PostgreSQL must not hold requests until it resumes: 503 after db_answer_timeout_s.
    from db.session import bound_answers, get_engine

    bound_answers(get_engine(), get_settings().db_answer_timeout_s)
    freeze_startup_heap()
    yield


def freeze_startup_heap() -> None:
    """Keep what startup loaded (modules, routes, models: over 100,000 objects that live as long as
    the process) out of the garbage collector's full passes. Without it, every full pass during a
    request rescans them all: 40-60 ms pauses in the requests that build many objects (a 5,000-test
    selection, a flaky listing), which is what their p95 was made of."""
    gc.collect()
    gc.freeze()


def create_app() -> FastAPI:
    from anvil.settings import get_settings

    app = FastAPI(
        lifespan=_lifespan,
        title="Anvil",
        version=__version__,
        description="Distributed test execution: submit test cases, follow their runs and step traces.",
    )
    problems.install(app)
    openapi.install(app)
    # One router per resource; the executions package orders its own routes.
    routers = (
        health,
        auth,
        test_cases,
        test_suites,
        executions,
        manual,
        workspaces,
        schedules,
        secrets,
        users,
        tokens,
        quarantine,
        results,
        rules,
        tests,
        stats,
        workers,
        queues,
        metrics,
        webhooks,
    )
    for module in routers:
        app.include_router(module.router)
    ui.install(app)  # the web interface under /ui, and / redirecting there
    # Outermost first on the way in: the size cap, then the hostile-input checks on what it let through.
    app.add_middleware(InputGuard)
    settings = get_settings()
    # A report's own limit is checked by its route (a 422 naming it); the body may hold the form too.
    reports = {"/api/v1/results/junit": settings.import_max_bytes + 64 * 1024}
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, paths=reports)
    app.add_middleware(HttpMetrics)  # outermost: refused requests are counted too
    return app


app = create_app()
