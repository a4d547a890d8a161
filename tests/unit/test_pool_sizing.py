"""The database pool is sized from the API's concurrency, and requests beyond it wait for a turn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy.pool import QueuePool

from anvil.settings import Settings, get_settings
from api.deps import Busy, database_turn
from db.session import make_engine, pool_options


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_pool_holds_one_connection_per_api_thread_by_default() -> None:
    assert pool_options(Settings(api_threads=7)) == {"pool_size": 7, "max_overflow": 5, "pool_timeout": 10.0}
    # 8 threads per CPU, at most anyio's default of 40.
    assert Settings().pool_size == Settings().api_threads == min(40, 8 * (os.cpu_count() or 1))


def test_an_explicit_pool_size_wins() -> None:
    options = pool_options(Settings(api_threads=7, db_pool_size=3, db_max_overflow=0, db_pool_timeout_s=2))
    assert options == {"pool_size": 3, "max_overflow": 0, "pool_timeout": 2.0}


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://postgres@127.0.0.1:5432/nowhere", "sqlite:///{tmp}/a.db"]
)
def test_engines_take_the_sizes_from_the_settings(
    settings_env: pytest.MonkeyPatch, tmp_path: Path, url: str
) -> None:
    settings_env.setenv("ANVIL_API_THREADS", "9")
    settings_env.setenv("ANVIL_DB_MAX_OVERFLOW", "2")
    engine = make_engine(url.format(tmp=tmp_path))  # no connection is opened
    try:
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == 9
        assert engine.pool._max_overflow == 2
    finally:
        engine.dispose()


def test_an_in_memory_sqlite_engine_keeps_its_own_pool(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("ANVIL_DB_POOL_SIZE", "2")
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_a_request_waits_for_a_turn_and_gets_503_when_none_comes(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("ANVIL_DB_POOL_SIZE", "1")
    settings_env.setenv("ANVIL_DB_POOL_TIMEOUT_S", "0.3")
    order: list[str] = []

    async def holder(hold_s: float, ready: anyio.Event) -> None:
        async with database_turn():
            ready.set()
            order.append("first in")
            await anyio.sleep(hold_s)
            order.append("first out")

    async def waiter() -> None:
        async with database_turn():
            order.append("second in")

    async def main() -> None:
        # Held for less than the timeout: the second request waits, then gets its turn.
        ready = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder, 0.1, ready)
            await ready.wait()
            tg.start_soon(waiter)
        assert order == ["first in", "first out", "second in"]
        # Held for longer: the second request gives up with 503 Server busy.
        ready = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder, 1.0, ready)
            await ready.wait()
            with pytest.raises(Busy) as caught:
                await waiter()
        assert caught.value.status_code == 503
        assert "try again" in caught.value.detail

    anyio.run(main)
