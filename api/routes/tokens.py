"""API tokens for bots (CI): create (shown once), list, revoke.

Who may do what: any signed-in user creates tokens for themselves with a role up to their own
(default: their own); a token cannot be used to create further tokens (sign in with a password:
a leaked CI token cannot mint fresh ones). Admins see and revoke every token; others see and
revoke their own.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, Path, Response

from anvil.domain.enums import Role
from anvil.errors import Forbidden, NotFound
from api.account_schemas import ApiTokenCreate, ApiTokenCreated, ApiTokenPublic
from api.deps import SessionDep, Viewer, oauth2
from api.schemas import Page
from api.security import is_api_token
from db import tokens
from db.models import ApiToken
from db.types import utcnow

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
log = logging.getLogger("anvil.auth")


def _public(token: ApiToken, username: str) -> ApiTokenPublic:
    return ApiTokenPublic(
        id=token.id,
        name=token.name,
        role=Role(token.role),
        user_id=token.user_id,
        username=username,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )


@router.post("", response_model=ApiTokenCreated, status_code=201)
def post_token(
    body: ApiTokenCreate, user: Viewer, session: SessionDep, bearer: str | None = Depends(oauth2)
) -> ApiTokenCreated:
    if bearer and is_api_token(bearer):
        raise Forbidden(
            "an API token cannot create tokens; sign in with a username and password "
            "(POST /api/v1/auth/token) to create one"
        )
    role = body.role or Role(user.role)
    if role.level > Role(user.role).level:
        raise Forbidden(
            f"a token's role may be at most its creator's: {user.username} is {user.role}", field="body.role"
        )
    expires_at = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    with session.begin():
        row, secret = tokens.create_token(
            session, user=user, name=body.name, role=role, expires_at=expires_at
        )
    log.info("API token %r (%s) created by %s, role %s", row.name, row.id, user.username, row.role)
    return ApiTokenCreated(**_public(row, user.username).model_dump(), token=secret)


@router.get("", response_model=Page[ApiTokenPublic])
def get_tokens(user: Viewer, session: SessionDep) -> Page[ApiTokenPublic]:
    """Every token for an admin; a user's own otherwise."""
    with session.begin():
        rows = tokens.list_tokens(session, user_id=None if user.role == Role.ADMIN else user.id)
    return Page(items=[_public(t, name) for t, name in rows], next_cursor=None)


@router.delete("/{token_id}", status_code=204)
def delete_token(
    user: Viewer, session: SessionDep, token_id: uuid.UUID = Path(description="the token's id")
) -> Response:
    with session.begin():
        token = tokens.get_token(session, token_id)
        # Another user's token is "not found" to a non-admin, as it is absent from their list.
        if token is None or (user.role != Role.ADMIN and token.user_id != user.id):
            raise NotFound(f"API token {token_id} does not exist")
        name = token.name
        tokens.revoke_token(session, token=token)
    log.info("API token %r (%s) revoked by %s", name, token_id, user.username)
    return Response(status_code=204)
