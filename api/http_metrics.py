"""Counts every HTTP request by route template, method and status, and times it (anvil/metrics.py).

An ASGI middleware, the outermost (api/app.py), so requests refused before routing (a body too
large, hostile input) are counted too. The route is the template the router matched
(``/api/v1/executions/{execution_id}``), never the raw path: one series per route, however many
executions there are. A request no route matched is ``<unmatched>``.

The time is until the response's headers are sent: what the request cost the server. Counting to
the body's end would make an event stream, open for minutes, look like the slowest request.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from fastapi.routing import iter_route_contexts

from anvil import metrics

UNMATCHED = "<unmatched>"
# Any other method is counted as "OTHER": a client cannot add series by inventing methods.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: dict[str, Any]) -> str:
    """The template of the route the router chose for ``scope`` (known once routing is done)."""
    route = scope.get("route")
    if route is None:
        if "endpoint" in scope and scope.get("root_path"):  # a mounted app (static files): one series
            return f"{scope['root_path']}/{{path}}"
        return UNMATCHED
    full = _templates(scope["app"]).get(id(route)) if "app" in scope else None
    return full or str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


_known: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _templates(app: Any) -> dict[int, str]:
    """Route -> its full template. A route of an included router knows only its own part
    (``/{execution_id}``); FastAPI's route contexts add the prefixes it was included under."""
    templates = _known.get(app)
    if templates is None:
        templates = _known[app] = {
            id(context.original_route): context.path_format or ""
            for context in iter_route_contexts(app.routes)
        }
    return templates


class HttpMetrics:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}  # what the server answers when the app raises before responding
        timed = False

        async def send_and_time(message: Any) -> None:
            nonlocal timed
            if message["type"] == "http.response.start" and not timed:
                timed = True
                status["code"] = message["status"]
                _observe(scope, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_time)
        finally:
            if not timed:
                _observe(scope, time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(_method(scope), route_template(scope), str(status["code"])).inc()


def _method(scope: Any) -> str:
    method = str(scope["method"])
    return method if method in METHODS else "OTHER"


def _observe(scope: Any, seconds: float) -> None:
    metrics.HTTP_DURATION.labels(_method(scope), route_template(scope)).observe(seconds)
