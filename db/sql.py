"""SQL building blocks shared by the data-access modules: the database clock, statements built once
per process for the hot path, IN lists in slices, and rows fetched by the driver directly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Interval, Select, bindparam, func
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


# Ids per IN list when a statement names many rows.
CHUNK = 1000


def chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """``items`` in slices of at most ``size`` (IN lists of a bounded length)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def plain_rows(session: Session, statement: Select[Any]) -> Sequence[Any]:
    """The rows of ``statement``; on PostgreSQL fetched by the driver's cursor directly, which
    returns aware timestamps and UUIDs itself: SQLAlchemy's per-row and per-value processing cost
    more than judging the window's thousands of results."""
    if session.get_bind().dialect.name != "postgresql":
        return session.connection().execute(statement).all()
    compiled = statement.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), compiled.params)
        return cursor.fetchall()
    finally:
        cursor.close()
