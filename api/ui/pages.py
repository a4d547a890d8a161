"""Rendering pages: the Jinja2 templates, their filters, and errors shown as pages, not JSON.

Every UI route uses ``PageRoute``: an error raised while answering (a dependency's included) is a
page with the status code and the user-facing message, and a missing session is a redirect to the
login page, back to where the user was going once signed in.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from anvil.domain.enums import Role
from anvil.errors import AnvilError
from api.ui.session import LoginNeeded, SignedIn

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {seconds:02d}s"


templates.env.filters["when"] = _when
templates.env.filters["seconds"] = _seconds
templates.env.globals["roles"] = Role  # e.g. viewer.may(roles.MAINTAINER) in the navigation


def render(
    request: Request, name: str, viewer: SignedIn | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"viewer": viewer, **context}, status_code=status_code)


def error_page(request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", None, status_code, title=title, detail=detail)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or request.headers.get("HX-Request"):
        target = "/ui/executions"
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginNeeded:
                response: Response = login_redirect(request)
                if request.headers.get("HX-Request"):  # htmx follows redirects itself: reload instead
                    response = Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
                return response
            except AnvilError as exc:
                return error_page(request, exc.status_code, exc.title, exc.detail)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(part) for part in first.get("loc", ()))
                return error_page(request, 422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}")

        return answer
