"""Bearer credentials: JWT access tokens (HS256, signed with ANVIL_SECRET_KEY) and API tokens.

An access token carries its user's ``token_generation`` ("gen"); raising the generation (the
user was deactivated or changed password or role) revokes every token issued before. An API token
(``anvil_…``, db/tokens.py) acts with its own role capped at its owner's current role.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.errors import Unauthorized
from anvil.settings import Settings
from db.models import User
from db.tokens import PREFIX, find_token, touch
from db.types import utcnow
from db.users import get_user

ALGORITHM = "HS256"


class TokenRevoked(Unauthorized):
    title = "Token revoked"


def issue_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    username: str,
    role: str,
    generation: int = 0,
    ttl_s: int | None = None,
) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "name": username,
        "role": role,
        "gen": generation,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s or settings.token_ttl_s),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def token_for(settings: Settings, user: User) -> str:
    """An access token for ``user`` as it is now."""
    return issue_token(
        settings,
        user_id=user.id,
        username=user.username,
        role=user.role,
        generation=user.token_generation,
    )


def read_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        return jwt.decode(
            token, settings.secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired; request a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the access token is not valid") from exc


def is_api_token(token: str) -> bool:
    return token.startswith(PREFIX)


def user_for_token(session: Session, settings: Settings, token: str) -> User:
    """The user a bearer token acts as (an API token's user carries the token's role, detached
    from the session so that role is never written back), or Unauthorized."""
    if is_api_token(token):
        return _api_token_user(session, token)
    claims = read_token(settings, token)
    try:
        user = get_user(session, uuid.UUID(claims["sub"]))
    except ValueError:
        user = None
    if user is None or not user.is_active:
        raise Unauthorized("the token's user does not exist or is disabled")
    if claims.get("gen", 0) != user.token_generation:
        raise TokenRevoked(
            "token revoked: the user's password, role or status changed since it was issued; "
            "request a new one"
        )
    return user


def _api_token_user(session: Session, token: str) -> User:
    found = find_token(session, token=token)
    if found is None:
        raise Unauthorized("the API token is not valid (revoked, or never issued)")
    row, user = found
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized(f"the API token {row.name!r} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
    if not user.is_active:
        raise Unauthorized("the token's user does not exist or is disabled")
    touch(session, token=row, now=now)
    session.expunge(user)
    if Role(row.role).level < Role(user.role).level:
        user.role = row.role
    return user
