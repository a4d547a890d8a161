"""The ASGI app: ``uvicorn api.app:app`` (``anvil api`` runs it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from anvil import __version__
from api import problems
from api.routes import auth, executions, health, manual, test_cases


class BodyLimit:
    """Refuses request bodies above ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = problems.problem(
            413, "Request body too large", f"request bodies may be at most {self.limit} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app() -> FastAPI:
    from anvil.settings import get_settings

    app = FastAPI(
        title="Anvil",
        version=__version__,
        description="Distributed test execution: submit test cases, follow their runs and step traces.",
    )
    problems.install(app)
    for router in (health.router, auth.router, test_cases.router, executions.router, manual.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=get_settings().max_body_bytes)
    return app


app = create_app()
