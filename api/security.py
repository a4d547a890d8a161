"""JWT access tokens (HS256, signed with ANVIL_SECRET_KEY)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from anvil.errors import Unauthorized
from anvil.settings import Settings

ALGORITHM = "HS256"


def issue_token(
    settings: Settings, *, user_id: uuid.UUID, username: str, role: str, ttl_s: int | None = None
) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "name": username,
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s or settings.token_ttl_s),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def read_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        return jwt.decode(
            token, settings.secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired; request a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the access token is not valid") from exc
