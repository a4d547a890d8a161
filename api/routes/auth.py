from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from anvil.errors import Unauthorized
from api.deps import SessionDep, SettingsDep
from api.schemas import TokenPublic
from api.security import issue_token
from db.users import authenticate

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenPublic)
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep
) -> TokenPublic:
    """Exchange a username and password (OAuth2 password form) for a bearer token."""
    user = authenticate(session, username=form.username, password=form.password)
    if user is None:
        raise Unauthorized("wrong username or password")
    access = issue_token(settings, user_id=user.id, username=user.username, role=user.role)
    return TokenPublic(access_token=access, expires_in=settings.token_ttl_s, role=user.role)
