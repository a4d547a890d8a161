"""Who is signed in to the web interface, and the CSRF tokens of its forms.

The session cookie carries the same signed access token the API hands out (api/security.py), so
revoking a user's tokens (password, role or status change) ends their browser sessions too. It is
HttpOnly, SameSite=Lax, limited to /ui, and Secure when the page was served over HTTPS. The API
itself never reads the cookie: a cookie there would make every API endpoint open to cross-site
requests.

Every form carries ``csrf_token``: an HMAC of the session token with ANVIL_SECRET_KEY (the login
form: of a random nonce kept in a cookie of its own). A POST without the right one is refused, 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request, Response

from anvil.domain.enums import Role
from anvil.errors import Forbidden, Unauthorized
from anvil.settings import Settings
from api.deps import SessionDep, SettingsDep, check_role
from api.security import is_api_token, user_for_token
from db.models import User

COOKIE = "anvil_session"
LOGIN_COOKIE = "anvil_login"
LOGIN_NONCE_TTL_S = 3600


class LoginNeeded(Exception):
    """Nobody (or an expired or revoked session) is signed in: the page sends them to the login."""


class CsrfRefused(Forbidden):
    title = "Form refused"


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user of a page, and the CSRF token its forms carry."""

    user: User
    csrf: str

    def may(self, role: Role) -> bool:
        return Role(self.user.role).level >= role.level

    def need(self, role: Role) -> None:
        """The API's role check (api/deps.py), with its message: Forbidden below ``role``."""
        check_role(self.user, role)


def csrf_for(settings: Settings, source: str) -> str:
    return hmac.new(
        settings.secret_key.encode(), b"anvil-ui-csrf:" + source.encode(), hashlib.sha256
    ).hexdigest()


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def login_csrf(settings: Settings, nonce: str) -> str:
    """The login form's csrf_token for the nonce in its cookie (``secrets.token_urlsafe``)."""
    return csrf_for(settings, "login:" + nonce)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: Request, settings: Settings, csrf_token: str) -> None:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(csrf_token, login_csrf(settings, nonce)):
        raise CsrfRefused("the sign-in form expired or was not sent by this site; reload it and try again")


def page_user(request: Request, session: SessionDep, settings: SettingsDep) -> SignedIn:
    """The signed-in user, or LoginNeeded."""
    token = request.cookies.get(COOKIE)
    if not token or is_api_token(token):
        raise LoginNeeded
    try:
        user = user_for_token(session, settings, token)
    except Unauthorized:
        raise LoginNeeded from None
    session.commit()  # end the read: the connection goes back to the pool (as api/deps.py does)
    return SignedIn(user=user, csrf=csrf_for(settings, token))


PageUser = Annotated[SignedIn, Depends(page_user)]


def form_user(viewer: PageUser, csrf_token: Annotated[str, Form()] = "") -> SignedIn:
    """The signed-in user of a form POST whose csrf_token is right; 403 otherwise."""
    if not csrf_token or not hmac.compare_digest(csrf_token, viewer.csrf):
        raise CsrfRefused("the form's CSRF token is missing or wrong; reload the page and try again")
    return viewer


FormUser = Annotated[SignedIn, Depends(form_user)]
