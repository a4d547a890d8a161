"""Engine and session factory. One engine per process (rebuilt after fork, e.g. in Celery's pool)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, event, func
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from anvil.settings import get_settings
from db.types import utcnow

_engines: dict[tuple[int, str], Engine] = {}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # Short connect timeout: while PostgreSQL is down the API answers 503 quickly instead of hanging.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 3, "options": "-c statement_timeout=30000"},
    )


def get_engine() -> Engine:
    url = get_settings().database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url)
    return engine


def new_session() -> Session:
    return sessionmaker(get_engine(), expire_on_commit=False)()


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


def read_db_now(session: Session) -> Any:
    """The database clock's current value, read once (for pure policy functions that take ``now``)."""
    if session.get_bind().dialect.name == "sqlite":
        return utcnow()
    from db.types import UTCDateTime

    return session.scalar(func.now(type_=UTCDateTime()).select())
