"""Request and response bodies of users, passwords and API tokens (api/routes/users.py, tokens.py, auth.py).

Usernames and passwords chosen here follow db/users.py's rules; a broken rule is a 422 naming the field.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from anvil.domain.enums import Role
from api.schemas import Strict
from db.users import password_problem, username_problem


def _username(value: str) -> str:
    if problem := username_problem(value):
        raise ValueError(problem)
    return value


def _password(value: str) -> str:
    if problem := password_problem(value):
        raise ValueError(problem)
    return value


Username = Annotated[
    str, AfterValidator(_username), Field(description="1-64 characters of A-Z a-z 0-9 . _ @ -")
]
NewPassword = Annotated[
    str,
    AfterValidator(_password),
    Field(description="at least 12 characters, not one of the most common passwords"),
]


class UserCreate(Strict):
    username: Username
    password: NewPassword
    role: Role = Role.TESTER


class UserUpdate(Strict):
    """What an admin changes; any change revokes the user's access tokens."""

    role: Role | None = None
    is_active: bool | None = Field(default=None, strict=True)
    password: NewPassword | None = Field(default=None, description="a new password (reset by an admin)")


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    created_at: datetime


class PasswordChange(Strict):
    current_password: Annotated[str, StringConstraints(max_length=1024)]
    new_password: NewPassword


TokenName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@ -]+$", strip_whitespace=True)
]


class ApiTokenCreate(Strict):
    name: TokenName
    role: Role | None = Field(default=None, description="default: the creator's role; never above it")
    expires_in_days: int | None = Field(
        default=90, ge=1, le=3650, strict=True, description="null: the token does not expire"
    )


class ApiTokenPublic(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    user_id: uuid.UUID
    username: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenPublic):
    token: str = Field(description="the token itself: shown only now, store it as a secret")
