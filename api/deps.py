"""Dependency aliases: SessionDep, CurrentUser, role requirements, and turns at the database.

A request uses the database only during its turn (``database_turn``): at most ``pool_size``
(ANVIL_DB_POOL_SIZE, by default one per API thread) at once, so a thread never waits for a
connection another request holds while that request waits for a thread (with 500 clients, that
cycle answered 503 with the database idle). A request waits for its turn on the event loop,
holding neither a thread nor a connection, and gets 503 Server busy after db_pool_timeout_s.
Within its turn a request's session checks out a connection at its first query and returns it
when its transaction ends: authentication ends its read at once, and the session is closed as
soon as the endpoint's result is serialized, before the response is sent.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from anyio.lowlevel import RunVar
from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.errors import AnvilError, Forbidden, Unauthorized
from anvil.settings import Settings, get_settings
from api.security import user_for_token
from db.models import User
from db.session import new_session

T = TypeVar("T")
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


class Busy(AnvilError):
    status_code = 503
    title = "Server busy"


# One semaphore per event loop (each uvicorn worker process has its own loop and its own pool).
_turns: RunVar[anyio.Semaphore] = RunVar("anvil_database_turns")


def _semaphore() -> anyio.Semaphore:
    try:
        return _turns.get()
    except LookupError:
        turns = anyio.Semaphore(get_settings().pool_size)
        _turns.set(turns)
        return turns


@asynccontextmanager
async def database_turn() -> AsyncIterator[None]:
    """Wait, on the event loop, until fewer than ``pool_size`` requests use the database."""
    turns = _semaphore()
    timeout_s = get_settings().db_pool_timeout_s
    acquired = False
    with anyio.move_on_after(timeout_s):
        await turns.acquire()
        acquired = True
    if not acquired:
        raise Busy(
            f"every database connection was in use for {timeout_s:g}s; try again shortly",
            retry_after_s=2,
        )
    try:
        yield
    finally:
        turns.release()


# Password checks at once, per process. One argon2 check costs about 150 ms of CPU and 64 MiB here:
# with at most half of the CPUs hashing, wrong passwords cannot starve the other requests.
PASSWORD_CHECKS = max(1, (os.cpu_count() or 1) // 2)
_password_slots: RunVar[anyio.Semaphore] = RunVar("anvil_password_slots")
_password_threads: RunVar[anyio.CapacityLimiter] = RunVar("anvil_password_threads")


async def run_password_check(check: Callable[[], T]) -> T:
    """Run ``check`` (a login: a user lookup in a short session, then its password hash) on threads
    of its own, at most PASSWORD_CHECKS at once; the others wait on the event loop. A burst of
    logins then leaves the request threads, the database turns and most CPU to other requests."""
    try:
        slots, threads = _password_slots.get(), _password_threads.get()
    except LookupError:
        slots, threads = anyio.Semaphore(PASSWORD_CHECKS), anyio.CapacityLimiter(PASSWORD_CHECKS)
        _password_slots.set(slots)
        _password_threads.set(threads)
    async with slots, database_turn():
        return await anyio.to_thread.run_sync(check, limiter=threads)


async def get_session() -> AsyncIterator[Session]:
    async with database_turn():
        session = new_session()
        try:
            yield session
        finally:
            if session.in_transaction():  # ROLLBACK is a round trip: not on the event loop,
                # and not behind the thread limit that the other requests queue on.
                await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
            else:
                session.close()


# "function": closed once the endpoint's result is serialized, not after the response is sent.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_user(session: SessionDep, settings: SettingsDep, token: str | None = Depends(oauth2)) -> User:
    if not token:
        raise Unauthorized("this endpoint needs a bearer token: POST /api/v1/auth/token to get one")
    user = user_for_token(session, settings, token)  # a JWT or an API token (api/security.py)
    # End the read here: the connection goes back to the pool while the request waits for the
    # thread that runs its endpoint (the user stays loaded: sessions do not expire on commit).
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def check_role(user: User, role: Role) -> None:
    """Forbidden unless ``user`` has ``role`` or a higher one (the web interface checks the same)."""
    if Role(user.role).level < role.level:
        raise Forbidden(f"this needs the {role.value} role or higher; {user.username} is {user.role}")


def require(role: Role) -> Callable[[User], Coroutine[Any, Any, User]]:
    async def check(user: CurrentUser) -> User:  # async: no trip through the thread pool
        check_role(user, role)
        return user

    return check


Viewer = Annotated[User, Depends(require(Role.VIEWER))]
Tester = Annotated[User, Depends(require(Role.TESTER))]
Maintainer = Annotated[User, Depends(require(Role.MAINTAINER))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
