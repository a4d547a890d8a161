"""Engine and session factory. One engine per process (rebuilt after fork, e.g. in Celery's pool)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Interval, bindparam, create_engine, event, exc, func
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from anvil.settings import Settings, get_settings
from db.types import UTCDateTime, utcnow

T = TypeVar("T")

_engines: dict[tuple[int, str], Engine] = {}


def make_engine(url: str) -> Engine:
    """The process's engine for ``url``, its pool sized by the settings (``pool_options``)."""
    pool = pool_options(get_settings())
    if url.startswith("sqlite"):
        in_memory = make_url(url).database in (None, "", ":memory:")
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **({} if in_memory else pool)
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # Short connect timeout: while PostgreSQL is down the API answers 503 quickly instead of hanging.
    engine = create_engine(
        url, connect_args={"connect_timeout": 3, "options": "-c statement_timeout=30000"}, **pool
    )
    _ping_after_idle(engine)
    return engine


def pool_options(settings: Settings) -> dict[str, Any]:
    """Connections per process: ``pool_size`` (ANVIL_DB_POOL_SIZE, default one per API thread) kept,
    ``db_max_overflow`` more opened when needed, and ``db_pool_timeout_s`` the longest wait for one.

    The pool is per process: every uvicorn worker of `anvil api --workers N` and every Celery pool
    process builds its own engine (``get_engine`` is keyed by pid), so PostgreSQL may see up to
    N x (pool_size + db_max_overflow) connections from the API. Connections are opened on demand:
    a worker process that uses two never opens more.
    """
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }


# A connection that sat in the pool this long is tested before use (a database restart leaves
# stale ones behind). Busy connections skip the round trip: pre-pinging every checkout cost the
# worker three extra round trips per execution. A connection that breaks while in use raises
# OperationalError, which invalidates the whole pool; the worker retries, the API answers 503.
PING_AFTER_IDLE_S = 1.0


def _ping_after_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError(str(error)) from error


def get_engine() -> Engine:
    url = get_settings().database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url)
    return engine


_factories: dict[Engine, sessionmaker[Session]] = {}


def new_session() -> Session:
    engine = get_engine()
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(engine, expire_on_commit=False)
    return factory()


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
