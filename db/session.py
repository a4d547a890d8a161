"""Engine and session factory: the one place Anvil's sessions are made, and where their commit
hooks are registered. One engine per process (rebuilt after fork, e.g. in Celery's pool)."""

from __future__ import annotations

import copy
import os
import time
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from anvil.settings import Settings, get_settings
from db import changes, events, observed, reactions

_engines: dict[tuple[int, str], Engine] = {}
RV = TypeVar("RV")


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


class _BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection that stops waiting for an answer after ``answer_timeout_s``: it is then
    closed (its state is unknown), and SQLAlchemy discards it as disconnected (OperationalError)."""

    answer_timeout_s: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if timeout is not None:  # psycopg's own bounded waits (e.g. notifies) handle their timeouts
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.answer_timeout_s)
        except psycopg.OperationalError:
            self.pgconn.finish()
            raise


def bound_answers(engine: Engine, seconds: float) -> None:
    """Connections ``engine`` opens from now on wait at most ``seconds`` for each answer (the API's:
    statement_timeout cannot fire in a stopped server, and the connect timeout covers only connecting)."""
    if engine.dialect.driver != "psycopg":
        return

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> psycopg.Connection[Any]:
        conn = _BoundedConnection.connect(*cargs, **cparams)
        conn.answer_timeout_s = seconds
        return conn


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


def new_session(engine: Engine | None = None) -> Session:
    """A session of Anvil's: on the process's engine (or ``engine``), with the commit hooks below."""
    engine = engine or get_engine()
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = session_factory(engine)
    return factory()


_NOTES = (*changes.NOTE_KEYS, *events.NOTE_KEYS)
_KEPT = "anvil_notes_at_savepoints"


def _keep_notes(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        kept = {key: copy.copy(session.info[key]) for key in _NOTES if key in session.info}
        session.info.setdefault(_KEPT, {})[transaction] = kept


def _restore_notes(session: Session, previous: SessionTransaction) -> None:
    # after_rollback would fire for a savepoint too, and drop the outer transaction's notes with it.
    kept = session.info.get(_KEPT, {}).pop(previous, None) if previous.nested else None
    for key in _NOTES:
        session.info.pop(key, None)
    session.info.update(kept or {})


def _drop_kept(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_KEPT, None)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that react to what they changed, when they commit:

    - before the commit, in the same transaction: retries are scheduled for attempts that ended
      with retries left, and suites whose members changed are settled (db/reactions.py);
    - after it: the live-event streams of the executions that got events are nudged (db/events.py);
    - after a rollback, the notes of what changed are dropped with the changes; back to a
      savepoint, they are as they were when it began (what the outer transaction noted stays);
    - what the metrics count is counted after the commit only (db/observed.py).
    """
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "before_commit", reactions.react)
    event.listen(factory, "after_commit", events.nudge_listeners)
    event.listen(factory, "after_transaction_create", _keep_notes)
    event.listen(factory, "after_soft_rollback", _restore_notes)
    event.listen(factory, "after_transaction_end", _drop_kept)
    observed.listen(factory)
    return factory
