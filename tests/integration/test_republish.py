"""The reconciler re-publishes a silent QUEUED execution only when its message is missing from Redis.

Real PostgreSQL and Redis: executions are queued and published as the API does, made "silent"
(published long ago), and the tick is run against what Redis really holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.settings import Settings, get_settings
from scheduler import broker_look
from tests.helpers import make_case
from tests.integration.scheduling import claim_one, sql, tick
from tests.integration.support import published_ids
from workers.celery_app import RUN_TASK, app
from workers.publish import publish_many

BACKLOG = 20


@pytest.fixture(autouse=True)
def no_earlier_look() -> Iterator[None]:
    """A look taken by an earlier test's tick must not vouch for anything here."""
    broker_look.forget()
    yield
    broker_look.forget()


@pytest.fixture
def backlog(session: Session, queued: Callable[..., uuid.UUID], redis_client: redis.Redis) -> list[uuid.UUID]:
    """BACKLOG executions QUEUED and published, silent for a minute (nobody claimed them)."""
    case = make_case(session)
    ids = [queued(case) for _ in range(BACKLOG)]
    assert publish_many((i, "NORMAL") for i in ids) == BACKLOG
    sql("UPDATE executions SET published_at = now() - interval '1 minute' WHERE id = ANY(:ids)", ids=ids)
    return ids


def settings(after_s: float = 10.0) -> Settings:
    return get_settings().model_copy(update={"republish_after_s": after_s})


def publish_counts(ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = sql("SELECT id, publish_count FROM executions WHERE id = ANY(:ids)", ids=ids)
    return {r.id: r.publish_count for r in rows}


def messages(client: redis.Redis) -> list[str]:
    return published_ids(client, "normal")


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the tick read the broker (the real read, counted)."""
    calls: list[int] = []
    real = broker_look.look

    def counted() -> object:
        calls.append(1)
        return real()

    monkeypatch.setattr(broker_look, "look", counted)
    return calls


def test_a_backlog_waiting_in_redis_is_not_published_again(
    backlog: list[uuid.UUID], redis_client: redis.Redis, looks: list[int]
) -> None:
    reports = [tick(settings()) for _ in range(5)]

    assert [(r.republished, r.still_waiting) for r in reports] == [(0, BACKLOG)] * 5
    assert sorted(messages(redis_client)) == sorted(map(str, backlog)), "no copies were added"
    assert set(publish_counts(backlog).values()) == {1}
    assert len(looks) == 1, "one look vouches for the backlog for republish_after_s"


def test_only_the_messages_dropped_from_redis_are_published_again(
    backlog: list[uuid.UUID], redis_client: redis.Redis
) -> None:
    dropped = backlog[:3]
    raw = dict(zip(messages(redis_client), reversed(redis_client.lrange("normal", 0, -1)), strict=True))
    for ident in dropped:  # as a message lost on its own (a purge, a crash between writes)
        assert redis_client.lrem("normal", 1, raw[str(ident)]) == 1

    report = tick(settings())

    assert (report.republished, report.still_waiting) == (3, BACKLOG - 3)
    assert sorted(messages(redis_client)) == sorted(map(str, backlog)), "each one message, no copies"
    counts = publish_counts(backlog)
    assert {i: counts[i] for i in dropped} == {i: 2 for i in dropped}
    assert {counts[i] for i in backlog[3:]} == {1}


def test_a_message_on_a_priority_sub_list_counts_as_waiting(
    session: Session, queued: Callable[..., uuid.UUID], redis_client: redis.Redis
) -> None:
    execution_id = queued(make_case(session))
    # kombu keeps messages with a priority on lists of their own: "normal\x06\x163" for 3 to 5.
    app.send_task(RUN_TASK, args=[str(execution_id)], queue="normal", routing_key="normal", priority=5)
    assert redis_client.llen("normal") == 0 and redis_client.llen("normal\x06\x163") == 1
    sql("UPDATE executions SET published_at = now() - interval '1 minute' WHERE id = :id", id=execution_id)

    report = tick(settings())

    assert (report.republished, report.still_waiting) == (0, 1)
    assert redis_client.llen("normal") == 0


def test_an_emptied_redis_gets_every_queued_execution_again_within_republish_after_s(
    backlog: list[uuid.UUID], redis_client: redis.Redis
) -> None:
    fast = settings(after_s=1.0)
    assert tick(fast).still_waiting == BACKLOG  # looked: all there
    redis_client.flushdb()
    emptied = time.monotonic()

    # The look just taken still vouches for them for republish_after_s; then they are all missing.
    republished = 0
    while republished < BACKLOG:
        assert time.monotonic() - emptied < 1.0 + 2.0, "not re-published within republish_after_s"
        republished += tick(fast).republished
        time.sleep(0.05)

    assert time.monotonic() - emptied >= 1.0
    assert sorted(messages(redis_client)) == sorted(map(str, backlog)), "each one message, no copies"
    assert set(publish_counts(backlog).values()) == {2}


def test_a_message_a_worker_took_vouches_for_its_execution_only_a_while(
    backlog: list[uuid.UUID], redis_client: redis.Redis
) -> None:
    # A worker takes the oldest message and does not acknowledge it: kombu moves it to "unacked"
    # (and back to the queue when the connection closes, so it stays open for the whole test).
    with app.connection_for_write() as conn:
        message = conn.default_channel.basic_get("normal", no_ack=False)
        assert message is not None
        taken = uuid.UUID(message.payload[0][0])  # [args, kwargs, embed]
        assert taken == backlog[0] and redis_client.hlen("unacked") == 1
        assert tick(settings()).republished == 0, "a worker about to claim it holds its message"

        # That worker died before claiming it: the message stays in "unacked" until the visibility
        # timeout; republish_after_s after it was taken, the reconciler no longer counts on it.
        (tag,) = redis_client.hkeys("unacked")
        redis_client.zadd("unacked_index", {tag: time.time() - 11})
        broker_look.forget()
        report = tick(settings())

        assert (report.republished, report.still_waiting) == (1, BACKLOG - 1)
        assert messages(redis_client).count(str(taken)) == 1
        assert publish_counts([taken])[taken] == 2


def test_when_redis_cannot_be_read_every_silent_execution_is_published_again(
    backlog: list[uuid.UUID], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[int] = []

    def unreadable() -> None:
        looked.append(1)
        return None

    monkeypatch.setattr(broker_look, "look", unreadable)
    report = tick(settings())

    assert report.republished == BACKLOG, "PostgreSQL decides: every silent one is published again"
    assert set(publish_counts(backlog).values()) == {2}
    assert len(messages(redis_client)) == 2 * BACKLOG
    # A failed look is not retried at every tick (a Redis outage must not stall them all).
    sql("UPDATE executions SET published_at = now() - interval '1 minute' WHERE id = ANY(:ids)", ids=backlog)
    assert tick(settings()).republished == BACKLOG
    assert len(looked) == 1


def test_a_claimed_execution_is_not_published_again(
    backlog: list[uuid.UUID], redis_client: redis.Redis
) -> None:
    redis_client.delete("normal")
    claim_one(backlog[0])  # a worker took its message and claimed it

    report = tick(settings())

    assert report.republished == BACKLOG - 1
    assert str(backlog[0]) not in messages(redis_client)


def test_on_sqlite_a_message_never_published_is_published_once(
    sqlite_session: Session, redis_client: redis.Redis
) -> None:
    """Standalone mode's database: the same decision (UPDATE ... RETURNING works on SQLite too)."""
    from db.models import Execution
    from db.types import utcnow
    from tests.helpers import create_execution

    case = make_case(sqlite_session)
    with sqlite_session.begin():
        execution_id = create_execution(
            sqlite_session,
            case=case,
            priority=Priority.NORMAL,
            trigger_kind=TriggerKind.API,
            requested_by=None,
        ).id
    # Committed, then the process died before publishing: nothing in Redis.
    with sqlite_session.begin():
        silent_since = utcnow() - timedelta(minutes=1)
        sqlite_session.execute(
            update(Execution).where(Execution.id == execution_id).values(published_at=silent_since)
        )

    reports = [tick(settings()) for _ in range(3)]

    assert [r.republished for r in reports] == [1, 0, 0]
    assert messages(redis_client) == [str(execution_id)]
