"""Integration fixtures: the real API in-process (TestClient) on the session's PostgreSQL and Redis DB 9."""

from __future__ import annotations

import functools
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.settings import get_settings
from api.security import issue_token
from db.models import TestCase, User
from db.session import new_session
from tests.helpers import create_execution, make_case
from tests.integration.support import count_rows

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; the httpx the project already depends on works the same.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

Headers = dict[str, str]


@pytest.fixture
def client(clean_db: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    from api.app import app
    from api.ui import tests_page

    # The tests page keeps its flaky board per process, brought up to date as results arrive; a
    # database emptied under it (which only tests do) would leave the last test's tests on it.
    tests_page._boards.clear()
    with TestClient(app) as c:
        yield c


@functools.cache
def password_hash() -> str:
    # argon2 is slow on purpose; one hash of "pw" serves every user the tests make.
    return PasswordHasher().hash("pw")


@pytest.fixture
def auth(clean_db: str) -> Callable[..., Headers]:
    """``auth(Role.TESTER)`` -> Authorization headers of a user with that role (one per role and name).

    The user's password is "pw" and its name ``name`` or "<role>-<random>".
    """
    made: dict[tuple[Role, str | None], Headers] = {}

    def headers(role: Role = Role.ADMIN, name: str | None = None) -> Headers:
        if (role, name) not in made:
            user = User(
                id=uuid.uuid4(),
                username=name or f"{role.value}-{uuid.uuid4().hex[:6]}",
                password_hash=password_hash(),
                role=role.value,
            )
            with new_session() as s, s.begin():
                s.add(user)
            token = issue_token(get_settings(), user_id=user.id, username=user.username, role=user.role)
            made[role, name] = {"Authorization": f"Bearer {token}"}
        return made[role, name]

    return headers


@pytest.fixture
def queued(session: Session) -> Callable[..., uuid.UUID]:
    """Creates a QUEUED execution of a fresh case straight in the database; returns its id."""

    def make(case: TestCase | None = None, **kw: Any) -> uuid.UUID:
        case = case or make_case(session)
        with session.begin():
            execution = create_execution(
                session,
                case=case,
                priority=kw.pop("priority", Priority.NORMAL),
                trigger_kind=kw.pop("trigger_kind", TriggerKind.API),
                requested_by=None,
                actor="test",
                **kw,
            )
        return execution.id

    return make


@pytest.fixture
def case(session: Session) -> TestCase:
    """A generic test case, straight in the database."""
    return make_case(session)


@pytest.fixture
def unchanged(session: Session) -> Iterator[None]:
    """Asserts the test wrote no row to any table but users."""
    before = count_rows()
    yield
    assert count_rows() == before


@pytest.fixture
def user(auth: Callable[..., Headers]) -> Callable[[Role, str], str]:
    """``user(Role.TESTER, "tess")`` makes that user (password "pw"); returns the name."""

    def make(role: Role, name: str) -> str:
        auth(role, name=name)
        return name

    return make
