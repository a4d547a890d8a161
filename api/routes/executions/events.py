"""Live events of an execution as Server-Sent Events: replayed from the database, then followed live.

``GET /api/v1/executions/{id}/events`` streams the execution_events rows of the execution's root:
every event of the tree for a root (a case, or a suite execution with all its members), or only the
execution's own events for a member of a suite. Each message is ``id: <seq>``, ``event: transition``
or ``step`` and ``data: <json>``. A client resuming with ``Last-Event-ID`` (or ``?last_event_id=``)
gets every event after that number, with no gap and no duplicate: the rows are always read from the
database, where a root's numbers appear in commit order (db/events.py). Redis pub/sub only says
"look again now"; without it (standalone mode, or Redis down) the database is polled.

An idle stream holds no database connection, no thread and no turn at the database
(api/deps.py): it waits for a nudge on the event loop, then takes a turn, reads the new events in a
short session on a thread, and gives all three back before it sends them. Hundreds of open streams
cost the database nothing while nothing happens.

The stream ends once nothing it covers is still active and every event has been sent, with a last
``event: end`` message (no id, so it never moves Last-Event-ID) carrying the final status: an
EventSource client should close on it, or it would reconnect to a stream that has ended.

Authentication is the bearer token, as everywhere; a token in the query string is not accepted
(it would land in access logs and browser history). Browsers use a fetch-based EventSource that
sends the Authorization header.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from sqlalchemy import exists, select

from anvil import metrics
from anvil.domain.states import ACTIVE, FINISHED
from anvil.errors import InvalidInput
from anvil.settings import get_settings
from api.deps import Busy, SessionDep, Viewer, database_turn
from db import notify
from db.events import channel, list_events
from db.executions import get_execution
from db.models import Execution
from db.session import new_session

log = logging.getLogger("anvil.api")
router = APIRouter()

HEARTBEAT_S = 15.0
# Longest wait for a Redis nudge before the database is read anyway: a nudge lost to a Redis
# hiccup delays the events by at most this. A lost subscription is noticed at once (then: POLL_S).
NUDGE_WAIT_S = 10.0
# Standalone mode: no pub/sub, so the database is polled.
POLL_S = 0.5
BATCH = 500
# Tells an EventSource how long to wait before reconnecting after a dropped connection.
RETRY_MS = 2000
MAX_EVENT_ID = 2**31 - 1  # event numbers are 32-bit integers in the database
_ACTIVE = [s.value for s in ACTIVE]
_FINISHED = {s.value for s in FINISHED}


@dataclass(frozen=True)
class Scope:
    """What one stream covers: a root's whole log, or one member's events in its root's log."""

    execution_id: uuid.UUID
    root_id: uuid.UUID

    @property
    def is_root(self) -> bool:
        return self.execution_id == self.root_id


@dataclass
class Poll:
    events: list[tuple[int, str, dict[str, Any]]]
    more: bool  # a full batch came back: read on before waiting
    finished: bool  # nothing the stream covers is active any more
    status: str


@router.get(
    "/{execution_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
def stream_events(
    execution_id: uuid.UUID,
    request: Request,
    _: Viewer,
    session: SessionDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="resume after this event")
    ] = None,
) -> StreamingResponse:
    """Transitions and step results as Server-Sent Events, from the start or after Last-Event-ID."""
    after = last_event_id or 0
    header = (last_event_id_header or "").strip()
    if not header.isascii():  # obs-text (e.g. "²", which str.isdigit() accepts): never an id of ours
        header = ""
    if header:  # what an EventSource sends when it reconnects: it wins over the query
        if not header.isdigit() or int(header) > MAX_EVENT_ID:
            raise InvalidInput(
                "Last-Event-ID must be the id of an event received earlier (a non-negative integer)",
                field="header.Last-Event-ID",
            )
        after = int(header)
    execution = get_execution(session, execution_id)
    scope = Scope(execution_id=execution.id, root_id=execution.root_execution_id)
    # The stream opens short sessions of its own: this one must not hold a connection meanwhile.
    session.close()
    return StreamingResponse(
        _stream(request, scope, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request, scope: Scope, after: int) -> AsyncIterator[bytes]:
    listener = await Listener.open(scope.root_id)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        last_sent, last_write = after, time.monotonic()
        while True:
            # A short session per read, in a thread (the event loop never waits on the database),
            # in a turn at the database: a thread never waits for a connection.
            try:
                async with database_turn():
                    poll = await anyio.to_thread.run_sync(partial(_read, scope, last_sent))
            except Busy:  # overloaded: the stream stays open and tries again
                yield b": keep-alive\n\n"
                last_write = time.monotonic()
                continue
            for seq, kind, data in poll.events:
                yield _message(seq, kind, data)
                metrics.EVENTS_STREAMED.labels(kind).inc()
                last_sent = seq
            if poll.events:
                last_write = time.monotonic()
            if poll.more:
                continue
            if poll.finished:
                end = {"execution_id": str(scope.execution_id), "status": poll.status}
                yield f"event: end\ndata: {json.dumps(end)}\n\n".encode()
                metrics.EVENTS_STREAMED.labels("end").inc()
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - last_write >= HEARTBEAT_S:
                yield b": keep-alive\n\n"
                last_write = time.monotonic()
            if listener is None or not await listener.wait(NUDGE_WAIT_S):
                listener = None
                await anyio.sleep(POLL_S)
    finally:
        if listener is not None:
            with anyio.CancelScope(shield=True):
                await listener.close()


def _message(seq: int, kind: str, data: dict[str, Any]) -> bytes:
    # json.dumps escapes every line break, so the data is one SSE line.
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _read(scope: Scope, after: int) -> Poll:
    """The events after ``after``, and whether the stream is over.

    The status is read first: the events query runs later, so it sees every event committed
    before the last execution became inactive, and "finished" never cuts off a late event.
    """
    with new_session() as session:
        status = session.scalar(select(Execution.status).where(Execution.id == scope.execution_id)) or ""
        if scope.is_root:
            active = session.scalar(
                select(
                    exists().where(
                        Execution.root_execution_id == scope.root_id, Execution.status.in_(_ACTIVE)
                    )
                )
            )
            finished = not active
        else:
            finished = status in _FINISHED
        rows = list_events(
            session,
            root_id=scope.root_id,
            after=after,
            execution_id=None if scope.is_root else scope.execution_id,
            limit=BATCH,
        )
        events = [(row.seq, row.type, row.data) for row in rows]
    return Poll(events=events, more=len(events) == BATCH, finished=finished, status=status)


class Listener:
    """A Redis subscription to one root's nudge channel; None where the broker is not Redis."""

    def __init__(self, client: aioredis.Redis, pubsub: Any) -> None:
        self.client, self.pubsub = client, pubsub

    @classmethod
    async def open(cls, root_id: uuid.UUID) -> Listener | None:
        if notify.client() is None:  # standalone mode on kombu's filesystem transport
            return None
        client = aioredis.Redis.from_url(
            get_settings().redis_url, socket_connect_timeout=1, socket_timeout=NUDGE_WAIT_S + 5
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel(root_id))
        except (RedisError, OSError) as exc:
            log.debug("no live nudges for %s (the stream polls the database): %s", root_id, exc)
            await pubsub.aclose()
            await client.aclose()
            return None
        return cls(client, pubsub)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a nudge (then drain the others). False: Redis failed, poll instead."""
        try:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            while message is not None:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        except (RedisError, OSError) as exc:
            log.debug("live nudges lost (the stream polls the database now): %s", exc)
            await self.close()
            return False
        return True

    async def close(self) -> None:
        try:
            await self.pubsub.aclose()
            await self.client.aclose()
        except (RedisError, OSError):
            pass
