"""RFC 9457 problem details: every error the API returns goes through here."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from anvil.errors import AnvilError

log = logging.getLogger("anvil.api")
PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    # "body" / "query" / "header" stay as the first element: it says where the field is.
    return ".".join(parts)


def allowed_methods(request: Request) -> str:
    """The methods the OpenAPI document gives the request's path (Starlette names only one route's).

    Where a literal path and a template both match (``/executions/case`` and
    ``/executions/{execution_id}``), the literal one is the path meant: the most specific wins.
    """
    table = getattr(request.app.state, "path_methods", None)
    if table is None:
        table = request.app.state.path_methods = _path_methods(request.app.openapi())
    path = request.url.path
    for pattern, methods in table:
        if pattern.fullmatch(path):
            return methods
    return ""


def _path_methods(document: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    table = []
    for template, item in document.get("paths", {}).items():
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
        methods = sorted((m.upper() for m in item if m.upper() in order), key=order.index)
        table.append((template.count("{"), pattern, ", ".join(methods)))
    return [(pattern, methods) for _, pattern, methods in sorted(table, key=lambda row: row[0])]


def install(app: FastAPI) -> None:
    @app.exception_handler(AnvilError)
    async def _anvil(request: Request, exc: AnvilError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.extra.get("retry_after_s") is not None:  # 429, 503: when to try again, in seconds
            headers = {"Retry-After": str(exc.extra["retry_after_s"])}
        return problem(
            exc.status_code,
            exc.title,
            exc.detail,
            request=request,
            headers=headers,
            field=exc.field,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        allowed = allowed_methods(request)
        if allowed and request.method not in allowed.split(", "):
            # GET /executions/case reached /executions/{execution_id} and failed on the id, but the
            # path meant is the literal one, which has no GET.
            return problem(
                405, "Method not allowed", "Method Not Allowed", request=request, headers={"Allow": allowed}
            )
        errors = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem(422, "Invalid request", detail, request=request, field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            request=request,
            headers=headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem(
            503,
            "Database unavailable",
            "the database cannot be reached right now; try again shortly",
            request=request,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _db_down(request, exc)
        log.exception("database error")
        return problem(500, "Internal error", "the database refused the operation", request=request)
