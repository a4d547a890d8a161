from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from anvil.errors import Unauthorized
from api.deps import SettingsDep, run_password_check
from api.schemas import TokenPublic
from api.security import issue_token
from db.models import User
from db.session import new_session
from db.users import authenticate

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenPublic)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], settings: SettingsDep
) -> TokenPublic:
    """Exchange a username and password (OAuth2 password form) for a bearer token."""
    # Not on a request thread: password hashes run a few at a time (api/deps.py).
    user = await run_password_check(partial(_authenticate, form.username, form.password))
    if user is None:
        raise Unauthorized("wrong username or password")
    access = issue_token(settings, user_id=user.id, username=user.username, role=user.role)
    return TokenPublic(access_token=access, expires_in=settings.token_ttl_s, role=user.role)


def _authenticate(username: str, password: str) -> User | None:
    with new_session() as session:  # the user stays loaded once the session is closed
        return authenticate(session, username=username, password=password)
