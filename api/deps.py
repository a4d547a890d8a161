"""Dependency aliases: SessionDep, CurrentUser, and role requirements."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from anvil.errors import Forbidden, Unauthorized
from anvil.settings import Settings, get_settings
from api.security import read_token
from db.enums import Role
from db.models import User
from db.session import new_session
from db.users import get_user

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_user(session: SessionDep, settings: SettingsDep, token: str | None = Depends(oauth2)) -> User:
    if not token:
        raise Unauthorized("this endpoint needs a bearer token: POST /api/v1/auth/token to get one")
    claims = read_token(settings, token)
    try:
        user = get_user(session, uuid.UUID(claims["sub"]))
    except ValueError:
        user = None
    if user is None or not user.is_active:
        raise Unauthorized("the token's user does not exist or is disabled")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(role: Role) -> Callable[[User], User]:
    def check(user: CurrentUser) -> User:
        if Role(user.role).level < role.level:
            raise Forbidden(f"this needs the {role.value} role or higher; {user.username} is {user.role}")
        return user

    return check


Viewer = Annotated[User, Depends(require(Role.VIEWER))]
Tester = Annotated[User, Depends(require(Role.TESTER))]
Maintainer = Annotated[User, Depends(require(Role.MAINTAINER))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
