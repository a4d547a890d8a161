"""Users (admin only): create, list, read, and change role, active flag or password.

Every change of role, active flag or password revokes the user's access tokens (api/security.py).
A user changes their own password with POST /api/v1/auth/password.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session

from anvil.errors import NotFound
from api.account_schemas import UserCreate, UserPublic, UserUpdate
from api.deps import Admin, SessionDep
from api.schemas import Page
from db.models import User
from db.users import create_user, get_user, list_users, update_user

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = logging.getLogger("anvil.auth")

UserId = Path(description="the user's id")


def _user(session: Session, user_id: uuid.UUID) -> User:
    user = get_user(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


@router.post("", response_model=UserPublic, status_code=201)
def post_user(body: UserCreate, admin: Admin, session: SessionDep) -> UserPublic:
    with session.begin():
        user = create_user(session, username=body.username, password=body.password, role=body.role)
    log.info("user %s created as %s by %s", user.username, user.role, admin.username)
    return UserPublic.model_validate(user)


@router.get("", response_model=Page[UserPublic])
def get_users(_: Admin, session: SessionDep) -> Page[UserPublic]:
    with session.begin():
        users = list_users(session)
    return Page(items=[UserPublic.model_validate(u) for u in users], next_cursor=None)


@router.get("/{user_id}", response_model=UserPublic)
def get_one_user(_: Admin, session: SessionDep, user_id: uuid.UUID = UserId) -> UserPublic:
    with session.begin():
        return UserPublic.model_validate(_user(session, user_id))


@router.patch("/{user_id}", response_model=UserPublic)
def patch_user(
    body: UserUpdate, admin: Admin, session: SessionDep, user_id: uuid.UUID = UserId
) -> UserPublic:
    with session.begin():
        user = update_user(
            session,
            user=_user(session, user_id),
            role=body.role,
            is_active=body.is_active,
            password=body.password,
        )
    changed = ", ".join(sorted(body.model_dump(exclude_unset=True, exclude={"password"})))
    if body.password is not None:
        changed = f"{changed}, password" if changed else "password"
    log.info("user %s changed by %s (%s); their tokens are revoked", user.username, admin.username, changed)
    return UserPublic.model_validate(user)
