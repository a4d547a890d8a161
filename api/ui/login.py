"""Signing in to and out of the web interface: the same users, passwords and throttling as
``POST /api/v1/auth/token`` (api/routes/auth.py), the token kept in the session cookie."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from api.deps import SettingsDep, run_password_check
from api.routes.auth import _locked, _login
from api.security import token_for
from api.ui.pages import PageRoute, render
from api.ui.session import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_NONCE_TTL_S,
    FormUser,
    check_login_csrf,
    login_csrf,
    new_login_nonce,
    set_cookie,
)

router = APIRouter(route_class=PageRoute)
HOME = "/ui/executions"


def _safe_next(target: str | None) -> str:
    """Only a page of this interface: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


def _login_page(
    request: Request,
    settings: SettingsDep,
    next_: str | None,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    nonce = new_login_nonce()
    csrf = login_csrf(settings, nonce)
    page = render(request, "login.html", None, status_code, next=_safe_next(next_), error=error, csrf=csrf)
    set_cookie(request, page, LOGIN_COOKIE, nonce, LOGIN_NONCE_TTL_S)
    return page


@router.get("/login")
def login_form(
    request: Request,
    settings: SettingsDep,
    next: str | None = None,  # the query's name (shadows the builtin)
) -> Response:
    return _login_page(request, settings, next)


@router.post("/login")
async def login(
    request: Request,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,  # the form field's name
) -> Response:
    check_login_csrf(request, settings, csrf_token)
    address = request.client.host if request.client else "unknown"
    outcome = await run_password_check(partial(_login, settings, username, password, address))
    if isinstance(outcome, float):
        return _login_page(request, settings, next, 429, _locked(outcome).detail)
    if outcome is None:
        return _login_page(request, settings, next, 401, "Wrong username or password.")
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_cookie(request, response, COOKIE, token_for(settings, outcome), settings.token_ttl_s)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(_: FormUser) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
