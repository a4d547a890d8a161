"""API tokens for bots (CI): ``anvil_`` and 43 random URL-safe characters (256 bits), shown once
and stored only as their SHA-256 (a hash of that much randomness needs no salt or slow hash).

A token acts with its own role, never above its owner's current one, and stops working when its
owner is deactivated, when it expires or when it is revoked (deleted).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from anvil.domain.enums import Role
from db.models import ApiToken, User

PREFIX = "anvil_"
# last_used_at is written at most this often per token, so a busy bot costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    session: Session, *, user: User, name: str, role: Role, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token for ``user``; (its row, the token itself — the only time it is seen)."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=uuid.uuid4(),
        user_id=user.id,
        name=name,
        role=role.value,
        token_hash=hash_token(token),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def find_token(session: Session, *, token: str) -> tuple[ApiToken, User] | None:
    """The token and its owner, whatever their state (the caller checks expiry and activity)."""
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token))
    ).first()
    return (found[0], found[1]) if found else None


def touch(session: Session, *, token: ApiToken, now: datetime) -> None:
    """Record a use, unless one was recorded less than LAST_USED_RESOLUTION ago."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(token, "last_used_at", now)  # written above: not dirty


def list_tokens(session: Session, *, user_id: uuid.UUID | None) -> list[tuple[ApiToken, str]]:
    """Tokens with their owner's username, newest first; of one user, or of everyone (None)."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    rows = session.execute(query.order_by(ApiToken.created_at.desc(), ApiToken.id))
    return [(token, username) for token, username in rows]


def get_token(session: Session, token_id: uuid.UUID) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def revoke_token(session: Session, *, token: ApiToken) -> None:
    session.delete(token)
    session.flush()
