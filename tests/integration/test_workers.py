"""The worker registry on PostgreSQL (and SQLite): register, heartbeat, stop, staleness, live slots
per queue, takeover by a restarted worker of the same name, retention, the API, and the worker's
heartbeat surviving an unreachable database."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from anvil.domain.enums import QUEUES, Priority, Role
from anvil.domain.workers import WorkerProcess, WorkerState
from anvil.settings import get_settings
from db import workers
from db.session import new_session
from db.sql import read_db_now
from scheduler.retention import run_retention
from tests.integration.support import problem

Headers = dict[str, str]
ALL = tuple(QUEUES)
W1 = WorkerProcess(name="w1@host-a", host="host-a", pid=101, slots=4, queues=ALL, version="0.1.0")
W2 = WorkerProcess(
    name="w2@host-b", host="host-b", pid=202, slots=2, queues=("critical", "high"), version="0.1.0"
)


def write(work: Callable[[Session], Any]) -> Any:
    with new_session() as s, s.begin():
        return work(s)


def register(worker: WorkerProcess) -> None:
    write(lambda s: workers.register(s, worker=worker))


def heartbeat(worker: WorkerProcess) -> bool:
    return bool(write(lambda s: workers.heartbeat(s, worker=worker)))


def stop(worker: WorkerProcess) -> bool:
    return bool(write(lambda s: workers.stopped(s, worker=worker)))


def now() -> datetime:
    with new_session() as s:
        return read_db_now(s)  # type: ignore[no-any-return]


def listed(state: WorkerState | None = None) -> dict[str, workers.WorkerView]:
    with new_session() as s:
        return {w.name: w for w in workers.list_workers(s, now=read_db_now(s), state=state)}


def slots(queue: str, *, at: datetime | None = None) -> int:
    with new_session() as s:
        return workers.live_slots(s, queue, now=at or read_db_now(s))


def silent_for(worker: WorkerProcess, seconds: float) -> None:
    """As if ``worker`` sent its last heartbeat ``seconds`` ago."""
    with new_session() as s, s.begin():
        s.execute(
            text("UPDATE workers SET heartbeat_at = now() - make_interval(secs => :s) WHERE name = :n"),
            {"s": seconds, "n": worker.name},
        )


def test_registered_workers_are_live_and_their_slots_count_for_the_queues_they_consume(
    clean_db: str,
) -> None:
    register(W1)
    register(W2)

    found = listed()
    assert set(found) == {W1.name, W2.name}
    one = found[W1.name]
    assert (one.host, one.pid, one.slots, one.queues, one.version) == ("host-a", 101, 4, list(ALL), "0.1.0")
    assert one.state is WorkerState.LIVE and one.stopped_at is None
    assert one.started_at == one.heartbeat_at
    # The lead's call: slots of live workers consuming a priority's queue.
    assert slots(Priority.CRITICAL.queue) == 6
    assert slots(Priority.HIGH.queue) == 6
    assert slots(Priority.NORMAL.queue) == 4
    assert slots(Priority.DEFERRED.queue) == 4
    assert slots("no-such-queue") == 0
    with new_session() as s:
        live = workers.capacity(s, now=read_db_now(s))
    assert live.workers == 2
    assert live.slots == {"critical": 6, "high": 6, "normal": 4, "low": 4, "deferred": 4}


def test_a_heartbeat_renews_the_row_and_takes_new_queues_and_slots(clean_db: str) -> None:
    register(W1)
    silent_for(W1, 20)
    before = listed()[W1.name]

    assert heartbeat(replace(W1, queues=("low",), slots=6)) is True

    after = listed()[W1.name]
    assert after.heartbeat_at > before.heartbeat_at and after.started_at == before.started_at
    assert after.queues == ["low"] and after.slots == 6
    assert slots("low") == 6 and slots("critical") == 0


def test_a_worker_without_heartbeats_for_three_intervals_is_stale_and_its_slots_do_not_count(
    clean_db: str,
) -> None:
    interval = get_settings().worker_heartbeat_s
    register(W1)
    register(W2)
    silent_for(W2, 3 * interval + 5)

    assert listed()[W1.name].state is WorkerState.LIVE
    assert listed()[W2.name].state is WorkerState.STALE
    assert slots("critical") == 4
    assert set(listed(WorkerState.STALE)) == {W2.name}
    assert set(listed(WorkerState.LIVE)) == {W1.name}
    # Judged at the ``now`` given: a while later the other one is stale too.
    later = now() + timedelta(seconds=3 * interval + 1)
    assert slots("critical", at=later) == 0

    # Its next heartbeat makes it live again.
    assert heartbeat(W2) is True
    assert listed()[W2.name].state is WorkerState.LIVE
    assert slots("critical") == 6


def test_a_stopped_worker_is_listed_stopped_and_its_slots_do_not_count(clean_db: str) -> None:
    register(W1)
    register(W2)

    assert stop(W2) is True
    assert stop(W2) is False  # once

    assert listed()[W2.name].state is WorkerState.STOPPED
    assert listed()[W2.name].stopped_at is not None
    assert set(listed(WorkerState.STOPPED)) == {W2.name}
    assert slots("critical") == 4 and slots("normal") == 4


def test_a_restarted_worker_takes_its_row_over_and_its_predecessor_cannot_touch_it(clean_db: str) -> None:
    register(W1)
    stop(W1)
    silent_for(W1, 60)
    restarted = replace(W1, pid=999, slots=8)

    register(restarted)

    row = listed()[W1.name]
    assert (row.pid, row.slots, row.state, row.stopped_at) == (999, 8, WorkerState.LIVE, None)
    assert len(listed()) == 1
    assert stop(W1) is False  # the old process's shutdown does not stop the new one
    assert listed()[W1.name].state is WorkerState.LIVE


def test_a_heartbeat_registers_again_when_the_row_is_gone(clean_db: str) -> None:
    register(W1)
    with new_session() as s, s.begin():
        s.execute(text("DELETE FROM workers"))

    assert heartbeat(W1) is False  # re-registered

    assert listed()[W1.name].state is WorkerState.LIVE
    assert heartbeat(W1) is True


def test_retention_forgets_workers_stopped_or_stale_for_a_week(clean_db: str) -> None:
    stale_long, stopped_long, stopped_recently = (
        replace(W1, name=f"{n}@h") for n in ("stale", "stopped", "recent")
    )
    for worker in (W1, stale_long, stopped_long, stopped_recently):
        register(worker)
    stop(stopped_long)
    stop(stopped_recently)
    silent_for(stale_long, 8 * 86400)
    silent_for(stopped_long, 8 * 86400)
    silent_for(stopped_recently, 6 * 86400)

    report = run_retention(get_settings().model_copy(update={"retention_batch": 1}), holder="t", force=True)

    assert report is not None and report.deleted["workers"] == 2
    assert set(listed()) == {W1.name, stopped_recently.name}


def test_the_api_lists_workers_with_totals_to_any_role(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    register(W1)
    register(W2)
    stop(W2)

    response = client.get("/api/v1/workers", headers=auth(Role.VIEWER))

    assert response.status_code == 200, response.text
    body = response.json()
    assert [w["name"] for w in body["items"]] == [W1.name, W2.name]
    first = body["items"][0]
    assert {k: first[k] for k in ("host", "pid", "slots", "queues", "version", "state")} == {
        "host": "host-a",
        "pid": 101,
        "slots": 4,
        "queues": list(ALL),
        "version": "0.1.0",
        "state": "live",
    }
    assert first["started_at"] and first["heartbeat_at"] and first["stopped_at"] is None
    assert body["items"][1]["state"] == "stopped"
    assert body["totals"] == {
        "live_workers": 1,
        "live_slots": {"critical": 4, "high": 4, "normal": 4, "low": 4, "deferred": 4},
    }
    assert body["heartbeat_s"] == get_settings().worker_heartbeat_s
    assert body["stale_after_s"] == 3 * body["heartbeat_s"]

    stopped = client.get("/api/v1/workers", params={"state": "stopped"}, headers=auth(Role.TESTER)).json()
    assert [w["name"] for w in stopped["items"]] == [W2.name]
    assert stopped["totals"]["live_workers"] == 1  # totals are over the live ones, whatever the filter


def test_bad_state_is_422_and_no_token_401(client: TestClient, auth: Callable[..., Headers]) -> None:
    problem(
        client.get("/api/v1/workers", params={"state": "dead"}, headers=auth(Role.VIEWER)), 422, "query.state"
    )
    problem(client.get("/api/v1/workers"), 401)


def test_the_registry_works_on_sqlite(sqlite_session: Session) -> None:
    workers.register(sqlite_session, worker=W1)
    workers.register(sqlite_session, worker=W2)
    sqlite_session.commit()
    assert workers.heartbeat(sqlite_session, worker=W1) is True
    assert workers.stopped(sqlite_session, worker=W2) is True
    register_again = replace(W2, pid=303)
    workers.register(sqlite_session, worker=register_again)
    sqlite_session.commit()

    current = read_db_now(sqlite_session)
    states = {w.name: w.state for w in workers.list_workers(sqlite_session, now=current)}
    assert states == {W1.name: WorkerState.LIVE, W2.name: WorkerState.LIVE}
    assert workers.live_slots(sqlite_session, "critical", now=current) == 6
    assert workers.live_slots(sqlite_session, "low", now=current) == 4
    later = current + timedelta(seconds=3 * get_settings().worker_heartbeat_s + 1)
    assert workers.live_slots(sqlite_session, "critical", now=later) == 0
    assert [w.name for w in workers.list_workers(sqlite_session, now=later, state=WorkerState.STALE)] == [
        W1.name,
        W2.name,
    ]
    assert workers.forget_old(sqlite_session, now=current + timedelta(days=8), limit=10) == 2


# --- the worker process's side (workers/registry.py) ---------------------------------------------


def consumer(name: str = "reg@host", *, concurrency: int = 3, max_concurrency: int | None = None) -> Any:
    """What the registry reads of Celery's consumer: node name, controller, selected queues."""
    return SimpleNamespace(
        hostname=name,
        controller=SimpleNamespace(concurrency=concurrency, max_concurrency=max_concurrency),
        app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"high": 1, "low": 1}))),
    )


@pytest.fixture
def unreachable_database() -> Iterator[Callable[[], None]]:
    """Points the settings at a database nobody listens on; calling the result points them back."""
    before = os.environ["ANVIL_DATABASE_URL"]

    def restore() -> None:
        os.environ["ANVIL_DATABASE_URL"] = before
        get_settings.cache_clear()

    os.environ["ANVIL_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:9/anvil"
    get_settings.cache_clear()
    yield restore
    restore()


def test_the_worker_registers_beats_and_stops_and_survives_an_unreachable_database(
    clean_db: str, unreachable_database: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    from workers.registry import Heartbeat

    beat = Heartbeat(consumer(max_concurrency=8), interval_s=3600)
    process = beat.process()
    assert (process.name, process.slots, process.queues, process.pid) == (
        "reg@host",
        8,
        ("high", "low"),
        os.getpid(),
    )

    with caplog.at_level(logging.WARNING, logger="anvil.registry"):
        beat.register()  # logged, not raised
        beat.register()
    assert not beat.registered
    assert [r.getMessage() for r in caplog.records if "could not register" in r.getMessage()] != []
    assert len([r for r in caplog.records if "could not register" in r.getMessage()]) == 1  # once per outage

    unreachable_database()  # the database is back
    beat.register()
    assert beat.registered and listed()["reg@host"].slots == 8
    beat._attempt("heartbeat", beat._beat)
    beat.start()
    beat.stop()  # the thread ends, and the row is marked stopped
    assert not beat.thread.is_alive()
    assert listed()["reg@host"].state is WorkerState.STOPPED
