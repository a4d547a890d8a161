"""Shared fixtures: a migrated PostgreSQL database per test session, a Redis DB per session.

The environment is set before any Anvil module is imported, so the settings object, the engine
and the Celery app all point at the test services. Multi-process tests clone their own database
from the migrated template (``fresh_database``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

PG_ADMIN = os.environ.get("ANVIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("ANVIL_TEST_REDIS", "redis://127.0.0.1:6379")
RUN = uuid.uuid4().hex[:8]
TEMPLATE_DB = f"anvil_tpl_{RUN}"
SESSION_DB = f"anvil_t_{RUN}"


def redis_dbs(worker: str | None, workers: int) -> tuple[int, list[int]]:
    """(the session's Redis DB, the DBs fresh ones cycle through) for one pytest process.

    DB 0 is left to users. A serial session takes 9 and cycles through 10..15; the workers of a
    parallel (xdist) session split 1..8 between them, so a serial and a parallel session can run side by side.
    """
    if worker is None:
        return 9, list(range(10, 16))
    size = 8 // workers
    if size == 0:
        raise RuntimeError(f"{workers} xdist workers: at most 8 can share a Redis (DBs 1..8)")
    first = 1 + int(worker.removeprefix("gw")) * size
    return first, list(range(first + 1, first + size))


SESSION_REDIS_DB, FRESH_REDIS_DBS = redis_dbs(
    os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
)


def sqlalchemy_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


os.environ["ANVIL_DATABASE_URL"] = sqlalchemy_url(SESSION_DB)
os.environ["ANVIL_REDIS_URL"] = f"{REDIS_BASE}/{SESSION_REDIS_DB}"
os.environ.setdefault("ANVIL_SECRET_KEY", "test-secret-key-that-is-long-enough-000")
os.environ.setdefault("ANVIL_SECRETS_KEY", "test-secrets-key-that-is-long-enough-00")


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def _drop(dbname: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def clone_database(name: str) -> str:
    """A new database copied from the migrated template; returns its SQLAlchemy URL."""
    _drop(name)
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    return sqlalchemy_url(name)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    from anvil.migrate import upgrade

    _drop(TEMPLATE_DB)
    _admin(f'CREATE DATABASE "{TEMPLATE_DB}"')
    upgrade(sqlalchemy_url(TEMPLATE_DB))
    # The migration's connections must be gone before the template can be copied.
    from db.session import _engines

    for engine in _engines.values():
        engine.dispose()
    yield TEMPLATE_DB
    _drop(TEMPLATE_DB)


@pytest.fixture(scope="session")
def pg_url(template_db: str) -> Iterator[str]:
    url = clone_database(SESSION_DB)
    yield url
    from db.session import _engines

    for engine in _engines.values():
        engine.dispose()
    _drop(SESSION_DB)


TABLES = (
    "webhook_deliveries",
    "webhooks",
    "test_quarantine_events",
    "result_rollups",
    "test_results",
    "tests",
    "api_tokens",
    "login_throttles",
    "execution_events",
    "manual_step_results",
    "step_traces",
    "execution_transitions",
    "shard_tests",
    "executions",
    "schedules",
    "scheduler_leases",
    "workers",
    "test_cases",
    "test_suites",
    "test_secrets",
    "users",
)


@pytest.fixture
def clean_db(pg_url: str) -> str:
    """The session database, emptied before the test."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return pg_url


@pytest.fixture
def session(clean_db: str) -> Iterator[object]:
    from db.session import new_session

    s = new_session()
    yield s
    s.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The session's Redis DB, flushed before the test."""
    client = redis.Redis.from_url(os.environ["ANVIL_REDIS_URL"])
    client.flushdb()
    yield client
    client.close()


_fresh_counter = iter(range(10**6))


@pytest.fixture
def fresh_database(template_db: str) -> Iterator[str]:
    """A database of its own for a test that starts Anvil processes."""
    name = f"anvil_f_{RUN}_{next(_fresh_counter)}"
    url = clone_database(name)
    yield url
    _drop(name)


@pytest.fixture
def fresh_redis() -> Iterator[str]:
    """A flushed Redis DB of its own (one of FRESH_REDIS_DBS) for a test that starts Anvil processes."""
    if not FRESH_REDIS_DBS:
        pytest.fail("no Redis DB left for fresh_redis: run tests that start processes on fewer xdist workers")
    db = FRESH_REDIS_DBS[next(_fresh_counter) % len(FRESH_REDIS_DBS)]
    url = f"{REDIS_BASE}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def sqlite_session(tmp_path: Path) -> Iterator[object]:
    """A session on a freshly migrated SQLite database (standalone mode's), which the settings
    point at for the duration of the test (PostgreSQL-only code paths have SQLite twins)."""
    from anvil.migrate import upgrade
    from anvil.settings import get_settings
    from db.session import new_session

    url = f"sqlite:///{tmp_path / 'anvil.db'}"
    upgrade(url)
    before = os.environ["ANVIL_DATABASE_URL"]
    os.environ["ANVIL_DATABASE_URL"] = url
    get_settings.cache_clear()
    s = new_session()
    try:
        yield s
    finally:
        s.close()
        os.environ["ANVIL_DATABASE_URL"] = before
        get_settings.cache_clear()


# Here, not in tests/faults/conftest.py: under xdist the controlling process collects no tests, so
# only this conftest is loaded where the summary is printed. The figures come in the reports.
def pytest_terminal_summary(terminalreporter: Any) -> None:
    import json

    entries = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", [])
        if name == "fault_report"
    ]
    if entries:
        terminalreporter.section("fault-test figures")
        for entry in entries:
            terminalreporter.write_line("FAULT-REPORT " + json.dumps(entry))
