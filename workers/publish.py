"""The one client of the broker: publishing "execution X is ready" on its priority queue (always
after the commit), checking that the broker answers, and reading which executions have a message
in it (``look``).

A failed publish is logged, not raised: the scheduler's reconciler publishes again any QUEUED
execution no worker has claimed and whose message is not in the broker, so the execution is
delayed, never lost.

``look`` serves that reconciler: it re-publishes only executions with no message in Redis, so a
long backlog does not fill Redis with copies (scheduler/broker_look.py). kombu's Redis transport
keeps one list per queue and priority step (``normal``, ``normal\\x06\\x163``, ``normal\\x06\\x166``,
…) and a copy of every message a worker took and has not acknowledged in the ``unacked`` hash, with
the time it was taken in the ``unacked_index`` sorted set. One MULTI/EXEC reads them all, so a
message moving from a queue to a worker between two reads is not missed. Best effort: ``look``
returns None when it cannot tell (another transport, Redis unreachable), and the reconciler then
publishes again without looking: PostgreSQL decides, and a duplicate is harmless.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anvil.domain.enums import QUEUES, Priority

log = logging.getLogger("anvil.publish")

# No retry: each try can wait the broker's socket_timeout (workers/celery_app.py), and retries kept a
# request waiting 20 s on a paused Redis; the reconciler publishes again anyway. (redis-py replaces a
# pooled connection that a Redis restart closed by itself: that publish still succeeds.)
_RETRY = {"max_retries": 0, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def publish(execution_id: uuid.UUID, priority: str, producer: Any = None) -> bool:
    from workers.celery_app import RUN_TASK, app

    queue = Priority(priority).queue
    try:
        app.send_task(
            RUN_TASK,
            args=[str(execution_id)],
            queue=queue,
            routing_key=queue,
            retry=True,
            retry_policy=_RETRY,
            producer=producer,
        )
    except Exception as exc:  # the broker is only a signal; the reconciler covers for it
        log.warning("publish of %s failed, the reconciler will retry: %s", execution_id, exc)
        return False
    return True


def publish_many(items: Iterable[tuple[uuid.UUID, str]]) -> int:
    """Publish each; several share one producer (one pool checkout for a batch or a suite)."""
    items = list(items)
    if len(items) < 2:
        return sum(publish(execution_id, priority) for execution_id, priority in items)
    from workers.celery_app import app

    try:
        with app.producer_or_acquire() as producer:
            return sum(publish(execution_id, priority, producer) for execution_id, priority in items)
    except Exception as exc:  # the pool could not give a connection: the reconciler covers for it
        log.warning("publishing %d executions failed, the reconciler will retry: %s", len(items), exc)
        return 0


def broker_problem() -> str | None:
    """Why the broker cannot be reached right now, or None when it answers (for /readyz)."""
    from workers.celery_app import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class BrokerLook:
    """One reading of the broker."""

    waiting: frozenset[uuid.UUID]  # a message waits in a queue (any priority step)
    taken: dict[uuid.UUID, float] = field(default_factory=dict)  # a worker holds it: seconds since it took it


def look(queues: Iterable[str] = QUEUES) -> BrokerLook | None:
    """The executions with a message in ``queues`` or held by a worker; None when Redis cannot be read."""
    from kombu.transport.redis import Channel as RedisChannel

    from workers.celery_app import RUN_TASK, app

    try:
        with app.pool.acquire(block=True, timeout=5) as conn:
            channel = conn.default_channel
            if not isinstance(channel, RedisChannel):
                return None  # the filesystem transport (standalone mode): no cheap way to list it
            keys = [channel._q_for_pri(q, step) for q in queues for step in channel.priority_steps]
            with channel.client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.lrange(key, 0, -1)
                pipe.hgetall(channel.unacked_key)
                pipe.zrange(channel.unacked_index_key, 0, -1, withscores=True)
                pipe.time()
                *lists, unacked, index, (seconds, micros) = pipe.execute()
    except Exception as exc:  # the broker is only a signal: the caller re-publishes instead
        log.warning("cannot read what waits in the broker, re-publishing without looking: %s", exc)
        return None
    waiting = {ident for raw in _flatten(lists) if (ident := _execution_id(raw, RUN_TASK))}
    # Scores are the taking worker's clock; "now" is Redis's, as close to one clock as we get.
    now = seconds + micros / 1e6
    taken_at = {_text(tag): score for tag, score in index}
    taken: dict[uuid.UUID, float] = {}
    for tag, entry in unacked.items():
        ident = _held_execution_id(entry, RUN_TASK)
        if ident is not None:
            # No time of taking: as if taken long ago, so it never vouches for its execution.
            age = max(0.0, now - taken_at.get(_text(tag), float("-inf")))
            taken[ident] = min(age, taken.get(ident, age))
    return BrokerLook(frozenset(waiting), taken)


def _flatten(lists: list[list[bytes]]) -> Iterable[bytes]:
    for items in lists:
        yield from items


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _execution_id(raw: bytes | str | dict[str, Any], task: str) -> uuid.UUID | None:
    """The execution id an Anvil message carries (kombu's JSON envelope, base64 JSON body), else None."""
    try:
        envelope = json.loads(raw) if isinstance(raw, bytes | str) else raw
        if envelope["headers"]["task"] != task:
            return None
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return uuid.UUID(args[0])
    except (ValueError, TypeError, KeyError, IndexError):
        return None  # not one of ours: it vouches for nothing


def _held_execution_id(entry: bytes, task: str) -> uuid.UUID | None:
    """An ``unacked`` entry is ``[message, exchange, routing_key]``."""
    try:
        message = json.loads(entry)[0]
    except (ValueError, TypeError, IndexError):
        return None
    return _execution_id(message, task) if isinstance(message, dict) else None
