"""Live events over SSE, served by a real `anvil api` process on the session's PostgreSQL and Redis.

Executions are driven straight through the data-access functions (claim, write_step, finish), so
each test decides exactly when an event is committed and checks what the stream delivers.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.cli.processes import Child, spawn, wait_http
from anvil.domain.enums import Priority, StepStatus, TriggerKind
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from db.attempts import finish
from db.events import channel
from db.models import ExecutionEvent, ExecutionTransition, StepTrace, TestCase
from db.session import new_session
from tests.helpers import claim_attempt, create_execution, make_case, make_suite_run, write_step

Headers = dict[str, str]


# --- reading a stream -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    id: int | None
    event: str
    data: dict[str, Any]


def sse_messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of a text/event-stream response, as a client parses them (comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                ident = fields.get("id")
                yield Message(
                    int(ident) if ident else None, fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(name: str, folder: Path, env: dict[str, str]) -> tuple[Child, str]:
    port = free_port()
    child = spawn(
        name,
        ["api"],
        env={**env, "ANVIL_API_HOST": "127.0.0.1", "ANVIL_API_PORT": str(port)},
        log=folder / f"{name}.log",
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", timeout=60, child=child)
    except Exception:
        child.kill()
        raise
    return child, url


@pytest.fixture(scope="module")
def api_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`anvil api` on the session database and Redis DB (pub/sub nudges on)."""
    env = {"ANVIL_DATABASE_URL": pg_url, "ANVIL_REDIS_URL": os.environ["ANVIL_REDIS_URL"]}
    child, url = start_api("api", tmp_path_factory.mktemp("events-api"), env)
    yield url
    child.stop()


@pytest.fixture(scope="module")
def standalone_api_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`anvil api` whose broker is kombu's filesystem transport: no pub/sub, the stream polls."""
    folder = tmp_path_factory.mktemp("events-standalone")
    env = {"ANVIL_DATABASE_URL": pg_url, "ANVIL_REDIS_URL": f"filesystem://{folder / 'broker'}"}
    child, url = start_api("api-standalone", folder, env)
    yield url
    child.stop()


@pytest.fixture
def viewer(auth: Callable[..., Headers]) -> Headers:
    from anvil.domain.enums import Role

    return auth(Role.VIEWER)


def open_stream(url: str, execution_id: uuid.UUID, headers: Headers, **params: Any) -> Any:
    # A bounded read timeout: a stream that stalls fails the test instead of hanging it.
    return httpx.stream(
        "GET",
        f"{url}/api/v1/executions/{execution_id}/events",
        headers=headers,
        params=params or None,
        timeout=httpx.Timeout(10.0),
    )


# --- building executions in the database ------------------------------------------------------------


def submit(session: Session, case: TestCase | None = None) -> uuid.UUID:
    case = case or make_case(session)
    with session.begin():
        execution = create_execution(
            session,
            case=case,
            priority=Priority.NORMAL,
            trigger_kind=TriggerKind.API,
            requested_by=None,
            actor="test",
        )
    return execution.id


def start(execution_id: uuid.UUID) -> int:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker="w1", lease_s=60)
    assert attempt is not None
    return attempt


def step(execution_id: uuid.UUID, attempt: int, seq: int, status: StepStatus = StepStatus.PASSED) -> None:
    record = StepRecord(seq=seq, name=f"step {seq}", status=status, duration_s=0.01, output=f"out {seq}")
    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=attempt, step=record, lease_s=60)


def end(execution_id: uuid.UUID, attempt: int, status: Status = Status.PASSED) -> None:
    with new_session() as s, s.begin():
        assert finish(s, execution_id, attempt=attempt, status=status, actor="test", summary={})


def run(session: Session, steps: int = 3, status: Status = Status.PASSED) -> uuid.UUID:
    execution_id = submit(session)
    attempt = start(execution_id)
    for seq in range(1, steps + 1):
        step(execution_id, attempt, seq)
    end(execution_id, attempt, status)
    return execution_id


def logged(root_id: uuid.UUID, execution_id: uuid.UUID | None = None) -> list[Message]:
    """The execution_events rows a stream must deliver, as messages."""
    with new_session() as s:
        stmt = select(ExecutionEvent).where(ExecutionEvent.root_execution_id == root_id)
        if execution_id is not None:
            stmt = stmt.where(ExecutionEvent.execution_id == execution_id)
        return [Message(e.seq, e.type, e.data) for e in s.scalars(stmt.order_by(ExecutionEvent.seq))]


Transition = tuple[str, int, str | None, str]
Step = tuple[str, int, int]


def recorded(execution_ids: list[uuid.UUID]) -> tuple[list[Transition], list[Step]]:
    """The transition rows and step rows of these executions, in comparable form."""
    with new_session() as s:
        transitions = s.execute(
            select(
                ExecutionTransition.execution_id,
                ExecutionTransition.attempt,
                ExecutionTransition.from_status,
                ExecutionTransition.to_status,
            ).where(ExecutionTransition.execution_id.in_(execution_ids))
        ).all()
        steps = s.execute(
            select(StepTrace.execution_id, StepTrace.attempt, StepTrace.seq).where(
                StepTrace.execution_id.in_(execution_ids)
            )
        ).all()
    return sorted((str(e), a, f or "", t) for e, a, f, t in transitions), sorted(
        (str(e), a, q) for e, a, q in steps
    )


def covered(messages: list[Message]) -> tuple[list[Transition], list[Step]]:
    """What the received events stand for, in the shape of recorded()."""
    transitions = sorted(
        (m.data["execution_id"], m.data["attempt"], m.data["from"] or "", m.data["to"])
        for m in messages
        if m.event == "transition"
    )
    steps = sorted(
        (m.data["execution_id"], m.data["attempt"], m.data["seq"]) for m in messages if m.event == "step"
    )
    return transitions, steps


def received(url: str, execution_id: uuid.UUID, headers: Headers, **params: Any) -> list[Message]:
    with open_stream(url, execution_id, headers, **params) as response:
        assert response.status_code == 200, response.read()
        return list(sse_messages(response))


# --- tests ----------------------------------------------------------------------------------------


def test_a_finished_case_replays_every_event_in_order_and_the_stream_ends(
    session: Session, api_url: str, viewer: Headers
) -> None:
    execution_id = run(session, steps=3)

    with open_stream(api_url, execution_id, viewer) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        messages = list(sse_messages(response))

    *events, last = messages
    assert events == logged(execution_id)
    assert [m.id for m in events] == [1, 2, 3, 4, 5, 6]
    assert [(m.event, m.data.get("to") or m.data["name"]) for m in events] == [
        ("transition", "QUEUED"),
        ("transition", "RUNNING"),
        ("step", "step 1"),
        ("step", "step 2"),
        ("step", "step 3"),
        ("transition", "PASSED"),
    ]
    assert covered(events) == recorded([execution_id])
    # The closing message has no id (a reconnect would resume after the last real event).
    assert last == Message(None, "end", {"execution_id": str(execution_id), "status": "PASSED"})


def test_resuming_after_last_event_id_sends_only_what_came_later(
    session: Session, api_url: str, viewer: Headers
) -> None:
    execution_id = run(session, steps=3, status=Status.FAILED)

    by_header = received(api_url, execution_id, {**viewer, "Last-Event-ID": "3"})
    by_query = received(api_url, execution_id, viewer, last_event_id=3)
    # An EventSource sends the header on reconnect: it wins over a stale query parameter.
    both = received(api_url, execution_id, {**viewer, "Last-Event-ID": "5"}, last_event_id=1)
    past_the_end = received(api_url, execution_id, {**viewer, "Last-Event-ID": "99"})
    empty = received(api_url, execution_id, {**viewer, "Last-Event-ID": ""})

    assert [m.id for m in by_header] == [4, 5, 6, None]
    assert by_query == by_header
    assert [m.id for m in both] == [6, None]
    assert both[0].data["to"] == "FAILED" and both[-1].data["status"] == "FAILED"
    assert [m.event for m in past_the_end] == ["end"]
    assert [m.id for m in empty] == [1, 2, 3, 4, 5, 6, None], "an empty Last-Event-ID means from the start"


def test_a_live_stream_delivers_each_event_as_it_commits_and_ends_after_the_terminal_one(
    session: Session, api_url: str, viewer: Headers
) -> None:
    execution_id = submit(session)

    with open_stream(api_url, execution_id, viewer) as response:
        messages = sse_messages(response)
        assert next(messages).data["to"] == "QUEUED"
        attempt = start(execution_id)
        assert next(messages).data["to"] == "RUNNING"
        # Each event arrives while the run is still going (a stalled stream hits the read timeout).
        for seq in (1, 2):
            step(execution_id, attempt, seq)
            got = next(messages)
            assert (got.event, got.data["seq"], got.data["status"]) == ("step", seq, "passed")
        end(execution_id, attempt, Status.FAILED)
        final = next(messages)
        closing = next(messages)
        rest = list(messages)  # the server closes the stream by itself

    assert final.event == "transition" and final.data["to"] == "FAILED"
    assert closing.event == "end" and closing.data["status"] == "FAILED"
    assert rest == []


def test_a_suite_stream_carries_every_member_and_a_member_stream_only_its_own(
    session: Session, api_url: str, viewer: Headers
) -> None:
    suite_id, child_ids = make_suite_run(session, 3)
    first = child_ids[0]

    with (
        open_stream(api_url, suite_id, viewer) as suite_response,
        open_stream(api_url, first, viewer) as child_response,
    ):
        suite_messages, child_messages = sse_messages(suite_response), sse_messages(child_response)
        # The suite's QUEUED event, then each member's.
        assert [next(suite_messages).id for _ in range(4)] == [1, 2, 3, 4]
        assert next(child_messages) == logged(suite_id, first)[0]
        for child_id, status in zip(child_ids, (Status.PASSED, Status.FAILED, Status.PASSED), strict=True):
            attempt = start(child_id)
            step(child_id, attempt, 1, StepStatus.PASSED if status is Status.PASSED else StepStatus.FAILED)
            end(child_id, attempt, status)
        suite_rest = list(suite_messages)
        child_rest = list(child_messages)

    suite_events = [m for m in suite_rest if m.event != "end"]
    everything = logged(suite_id)
    assert suite_events == everything[4:]
    assert [m.id for m in everything] == list(range(1, len(everything) + 1))
    assert covered(everything) == recorded([suite_id, *child_ids])
    assert suite_rest[-1] == Message(None, "end", {"execution_id": str(suite_id), "status": "FAILED"})
    # The suite went RUNNING with its first member and FAILED with its last: both in its stream.
    suite_own = [m.data["to"] for m in everything if m.data["execution_id"] == str(suite_id)]
    assert suite_own == ["QUEUED", "RUNNING", "FAILED"]

    child_events = [m for m in child_rest if m.event != "end"]
    assert child_events == logged(suite_id, first)[1:]
    assert {m.data["execution_id"] for m in child_events} == {str(first)}
    assert child_rest[-1].data == {"execution_id": str(first), "status": "PASSED"}


def test_without_redis_the_stream_polls_the_database(
    session: Session, standalone_api_url: str, viewer: Headers
) -> None:
    execution_id = submit(session)

    with open_stream(standalone_api_url, execution_id, viewer) as response:
        messages = sse_messages(response)
        assert next(messages).data["to"] == "QUEUED"
        attempt = start(execution_id)
        assert next(messages).data["to"] == "RUNNING"
        step(execution_id, attempt, 1)
        assert next(messages).data["seq"] == 1
        end(execution_id, attempt)
        rest = list(messages)

    assert [(m.event, m.id) for m in rest] == [("transition", 4), ("end", None)]


def test_a_client_that_goes_away_ends_its_stream_on_the_server(
    session: Session, api_url: str, viewer: Headers, redis_client: redis.Redis
) -> None:
    execution_id = submit(session)

    def listeners() -> int:
        return int(dict(redis_client.pubsub_numsub(channel(execution_id)))[channel(execution_id).encode()])

    with open_stream(api_url, execution_id, viewer) as response:
        # Kept in a variable: a discarded reader generator closes the connection when collected.
        messages = sse_messages(response)
        assert next(messages).data["to"] == "QUEUED"
        # SUBSCRIBE is sent before the first message, but redis-py does not wait for Redis to
        # confirm it, so this connection's NUMSUB may be served first.
        deadline = time.monotonic() + 5
        while listeners() != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert listeners() == 1
        del messages
    # The client closed the connection mid-run: the server notices and drops its subscription.
    deadline = time.monotonic() + 10
    while listeners() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listeners() == 0


def test_bad_requests_are_refused_with_problem_details(
    session: Session, api_url: str, viewer: Headers
) -> None:
    execution_id = run(session, steps=0)
    url = f"{api_url}/api/v1/executions/{execution_id}/events"

    bad_header = httpx.get(url, headers={**viewer, "Last-Event-ID": "abc"})
    too_big = httpx.get(url, headers={**viewer, "Last-Event-ID": str(2**31)})
    negative = httpx.get(url, headers=viewer, params={"last_event_id": -1})
    unknown = httpx.get(f"{api_url}/api/v1/executions/{uuid.uuid4()}/events", headers=viewer)
    anonymous = httpx.get(url)
    token_in_query = httpx.get(url, params={"access_token": viewer["Authorization"].split()[1]})

    assert bad_header.status_code == 422 and bad_header.json()["field"] == "header.Last-Event-ID"
    assert too_big.status_code == 422 and too_big.json()["field"] == "header.Last-Event-ID"
    assert negative.status_code == 422 and negative.json()["field"] == "query.last_event_id"
    assert unknown.status_code == 404
    assert anonymous.status_code == 401
    assert token_in_query.status_code == 401
