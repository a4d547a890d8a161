"""Sign-in (a bearer token for a username and password) and changing one's own password.

Logins are throttled per username and per client address (db/throttle.py, settings login_*):
after too many failures in a row, further attempts get 429 with Retry-After, for a time that
doubles with each further failure. Lockouts are logged on the "anvil.auth" logger.
"""

from __future__ import annotations

import logging
import math
import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from anvil.errors import Forbidden, TooManyRequests, Unauthorized
from anvil.settings import Settings
from api.account_schemas import PasswordChange
from api.deps import CurrentUser, SettingsDep, oauth2, run_password_check
from api.schemas import TokenPublic
from api.security import is_api_token, token_for
from db import throttle
from db.models import User
from db.session import new_session
from db.types import utcnow
from db.users import get_user, get_user_by_name, password_matches, update_user, verify_password

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
log = logging.getLogger("anvil.auth")


@router.post("/token", response_model=TokenPublic)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, settings: SettingsDep
) -> TokenPublic:
    """Exchange a username and password (OAuth2 password form) for a bearer token."""
    address = request.client.host if request.client else "unknown"
    # Not on a request thread: password hashes run a few at a time (api/deps.py).
    outcome = await run_password_check(partial(_login, settings, form.username, form.password, address))
    if isinstance(outcome, float):
        raise _locked(outcome)
    if outcome is None:
        raise Unauthorized("wrong username or password")
    return TokenPublic(
        access_token=token_for(settings, outcome), expires_in=settings.token_ttl_s, role=outcome.role
    )


@router.post("/password", response_model=TokenPublic)
async def change_password(
    body: PasswordChange, user: CurrentUser, settings: SettingsDep, bearer: str | None = Depends(oauth2)
) -> TokenPublic:
    """Change your own password. Every token issued before is revoked; the answer is a new one."""
    if bearer and is_api_token(bearer):
        raise Forbidden("an API token cannot change passwords; sign in with your username and password")
    outcome = await run_password_check(
        partial(_change_password, settings, user.id, body.current_password, body.new_password)
    )
    if isinstance(outcome, float):
        raise _locked(outcome)
    if outcome is None:
        raise Forbidden("the current password is wrong", field="body.current_password")
    log.info("user %s changed their password; their tokens are revoked", outcome.username)
    return TokenPublic(
        access_token=token_for(settings, outcome), expires_in=settings.token_ttl_s, role=outcome.role
    )


def _locked(wait_s: float) -> TooManyRequests:
    retry_after = max(1, math.ceil(wait_s))
    return TooManyRequests(
        f"too many failed sign-ins; try again in {retry_after} s", retry_after_s=retry_after
    )


def _user_key(username: str) -> str:
    return f"user:{username[:128]}"


def _policy(settings: Settings, threshold: int) -> throttle.Policy:
    return throttle.Policy(
        threshold=threshold,
        base_s=settings.login_lockout_s,
        max_s=settings.login_lockout_max_s,
        window_s=settings.login_failure_window_s,
    )


def _login(settings: Settings, username: str, password: str, address: str) -> User | float | None:
    """The user, the seconds a lockout still lasts, or None (wrong username or password)."""
    keys = {
        _user_key(username): settings.login_user_failures,
        f"addr:{address[:128]}": settings.login_address_failures,
    }
    now = utcnow()
    with new_session() as session:  # the user stays loaded once the session is closed
        with session.begin():
            wait = throttle.locked_for(session, keys=list(keys), now=now)
            candidate = get_user_by_name(session, username) if wait is None else None
        if wait is not None:
            log.warning("login refused for %r from %s: locked out for %.0f s more", username, address, wait)
            return wait
        # The hash check holds no connection: the read above has ended.
        user = candidate if password_matches(candidate, password) else None
        with session.begin():
            if user is not None:
                throttle.clear(session, key=_user_key(username))
                return user
            for key, threshold in keys.items():
                failures, lockout = throttle.record_failure(
                    session, key=key, policy=_policy(settings, threshold), now=now
                )
                if lockout is not None:
                    log.warning(
                        "login locked for %s after %d failed sign-ins in a row (%r from %s): %.0f s",
                        key.split(":", 1)[0],
                        failures,
                        username,
                        address,
                        lockout,
                    )
    return None


def _change_password(settings: Settings, user_id: uuid.UUID, current: str, new: str) -> User | float | None:
    """The user with the new password, the seconds a lockout still lasts, or None (wrong current)."""
    now = utcnow()
    with new_session() as session:
        with session.begin():
            user = get_user(session, user_id)
            if user is None or not user.is_active:
                raise Unauthorized("the token's user does not exist or is disabled")
            key = _user_key(user.username)
            wait = throttle.locked_for(session, keys=[key], now=now)
        if wait is not None:
            return wait
        with session.begin():
            if not verify_password(user, current):
                throttle.record_failure(
                    session, key=key, policy=_policy(settings, settings.login_user_failures), now=now
                )
                return None
            return update_user(session, user=user, password=new)
