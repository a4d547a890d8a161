"""Test secrets (admin only): values tests name in their env (``{"secret": NAME}``), never returned.

Storing a value needs ANVIL_SECRETS_KEY on the API server (503 without it); listing and deleting
do not. A secret some test case still names cannot be deleted (409 naming the cases).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.specs.env import NAME_PATTERN, NAME_RULE
from api.deps import Admin, SessionDep, SettingsDep
from api.schemas import SecretList, SecretPublic, SecretPut
from db import secrets
from db.models import TestSecret, User

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])

SecretName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        description=NAME_RULE,
        examples=["deploy-token"],
    ),
]


def _public(session: Session, items: list[TestSecret]) -> list[SecretPublic]:
    ids = {i for s in items for i in (s.created_by, s.updated_by) if i is not None}
    names: dict[uuid.UUID, str] = dict(
        session.execute(select(User.id, User.username).where(User.id.in_(ids))).tuples().all() if ids else []
    )
    return [
        SecretPublic(
            name=s.name,
            created_at=s.created_at,
            created_by=s.created_by,
            created_by_name=names.get(s.created_by) if s.created_by else None,
            updated_at=s.updated_at,
            updated_by=s.updated_by,
            updated_by_name=names.get(s.updated_by) if s.updated_by else None,
        )
        for s in items
    ]


@router.put(
    "/{name}",
    response_model=SecretPublic,
    responses={201: {"model": SecretPublic, "description": "Created"}},
)
def put_secret(
    name: SecretName,
    body: SecretPut,
    user: Admin,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> SecretPublic:
    """Create (201) or replace (200) a test secret. The value is stored encrypted and never returned;
    executions already running keep the value they started with."""
    box = secrets.box_for(settings)
    secret, created = secrets.put_secret(
        session, name=name, value=body.value.get_secret_value(), box=box, actor=user.id
    )
    session.commit()
    if created:
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/secrets/{name}"
    return _public(session, [secret])[0]


@router.get("", response_model=SecretList)
def list_secrets(_: Admin, session: SessionDep) -> SecretList:
    """Every test secret's name, when it was set and by whom (values are never returned)."""
    return SecretList(items=_public(session, secrets.list_secrets(session)))


@router.get("/{name}", response_model=SecretPublic)
def get_secret(name: SecretName, _: Admin, session: SessionDep) -> SecretPublic:
    """One secret's name, times and authors (never its value)."""
    return _public(session, [secrets.get_secret(session, name=name)])[0]


@router.delete("/{name}", status_code=204)
def delete_secret(name: SecretName, _: Admin, session: SessionDep) -> Response:
    """Remove a test secret. Refused (409, naming them) while live test cases name it; executions
    already queued that name it end ERROR when they run."""
    secrets.delete_secret(session, name=name)
    session.commit()
    return Response(status_code=204)
