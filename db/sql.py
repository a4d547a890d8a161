"""SQL building blocks shared by the data-access modules: the database clock, and statements
built once per process for the hot path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Interval, bindparam, func
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.types import UTCDateTime, utcnow

T = TypeVar("T")


def db_now(session: Session, offset_s: float = 0.0) -> Any:
    """The database clock (plus an offset) as a SQL expression.

    Every "is it due" decision and every lease uses it, so hosts with skewed clocks agree.
    SQLite (standalone mode, one host) has no interval arithmetic, so the local clock stands in.
    """
    if session.get_bind().dialect.name == "sqlite":
        return utcnow() + timedelta(seconds=offset_s)
    expr: ColumnElement[Any] = func.now()
    if offset_s:
        expr = expr + timedelta(seconds=offset_s)
    return expr


def clock(dialect: str, offset: str | None = None) -> Any:
    """The database clock, plus the interval in bind parameter ``offset``, for statements built
    once (``built_once``); ``clock_params`` gives the values to execute them with."""
    if dialect == "sqlite":
        return bindparam(f"clock_{offset or 'now'}", type_=UTCDateTime())
    return func.now() + bindparam(offset, type_=Interval()) if offset else func.now()


def clock_params(dialect: str, **offsets_s: float) -> dict[str, Any]:
    if dialect == "sqlite":
        now = utcnow()
        return {"clock_now": now, **{f"clock_{k}": now + timedelta(seconds=v) for k, v in offsets_s.items()}}
    return {k: timedelta(seconds=v) for k, v in offsets_s.items()}


_built: dict[tuple[Any, ...], Any] = {}


def built_once(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """A statement built on the first call and reused: building one and computing its cache key
    costs more than executing it, and the hot path (claim, steps, finish) runs a few per test."""
    stmt = _built.get(key)
    if stmt is None:
        stmt = _built[key] = build()
    return stmt


def read_db_now(session: Session) -> Any:
    """The database clock's current value, read once (for pure policy functions that take ``now``)."""
    if session.get_bind().dialect.name == "sqlite":
        return utcnow()
    return session.scalar(func.now(type_=UTCDateTime()).select())
