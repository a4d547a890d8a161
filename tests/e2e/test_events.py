"""Live events and JUnit export through a real stack: `anvil api`, `anvil worker`, `anvil beat`.

A client follows a running case (and a suite), drops the connection mid-run, reconnects with
Last-Event-ID, and must end up with exactly the transition and step rows in the database, each
once, in order; the stream ends by itself after the terminal event. The JUnit export of the pytest
example must count what pytest's own --junitxml counts for the same tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from junitparser import JUnitXml

from tests.e2e.conftest import Stack
from tests.integration.test_events import Message, sse_messages

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workspaces"
STREAM_TIMEOUT = httpx.Timeout(30.0)


def slow_steps(n: int, pause: float) -> list[dict[str, Any]]:
    return [{"name": f"step {i}", "run": ["sh", "-c", f"echo {i}; sleep {pause}"]} for i in range(1, n + 1)]


def follow(
    stack: Stack, execution_id: str, *, last_event_id: int | None = None, take: int | None = None
) -> list[Message]:
    """Read the stream: ``take`` messages then hang up, or (take=None) until the server ends it."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    got: list[Message] = []
    with stack.client.stream(
        "GET", f"/api/v1/executions/{execution_id}/events", headers=headers, timeout=STREAM_TIMEOUT
    ) as response:
        assert response.status_code == 200, response.read()
        for message in sse_messages(response):
            got.append(message)
            if take is not None and len(got) == take:
                break  # leaving the block closes the connection mid-run
    return got


def wait_for_rows(stack: Stack, sql: str, at_least: int, **params: Any) -> None:
    deadline = time.monotonic() + 60
    while stack.sql(sql, **params)[0][0] < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} rows for: {sql}"
        time.sleep(0.05)


def database_rows(
    stack: Stack, execution_ids: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(execution, attempt, from, to) of every transition and (execution, attempt, seq) of every step."""
    ids = [uuid.UUID(i) for i in execution_ids]
    transitions = stack.sql(
        "SELECT execution_id, attempt, from_status, to_status FROM execution_transitions "
        "WHERE execution_id = ANY(:ids)",
        ids=ids,
    )
    steps = stack.sql(
        "SELECT execution_id, attempt, seq FROM step_traces WHERE execution_id = ANY(:ids)", ids=ids
    )
    return (
        sorted((str(e), a, f or "", t) for e, a, f, t in transitions),
        sorted((str(e), a, q) for e, a, q in steps),
    )


def stood_for(events: list[Message]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the received events stand for, in the shape of database_rows()."""
    transitions = [
        (m.data["execution_id"], m.data["attempt"], m.data["from"] or "", m.data["to"])
        for m in events
        if m.event == "transition"
    ]
    steps = [(m.data["execution_id"], m.data["attempt"], m.data["seq"]) for m in events if m.event == "step"]
    return sorted(transitions), sorted(steps)


def reconnecting_client(
    stack: Stack, execution_id: str, *, first_take: int, wait_sql: str, wait_rows: int
) -> list[Message]:
    """Connect, hang up after ``first_take`` messages, let the run go on, resume from the last id."""
    first = follow(stack, execution_id, take=first_take)
    assert all(m.id is not None for m in first)
    # Events happen while nobody listens: the resumed stream must replay them.
    wait_for_rows(stack, wait_sql, wait_rows, id=uuid.UUID(execution_id))
    second = follow(stack, execution_id, last_event_id=first[-1].id)
    assert second, "the resumed stream delivered nothing"
    assert second[-1].event == "end", "the stream ended by itself with its closing message"
    assert second[0].id == first[-1].id + 1, "resumed right after the last event received"
    return first + second


def test_a_client_that_reconnects_with_last_event_id_misses_nothing_and_gets_nothing_twice(
    stack: Stack,
) -> None:
    case = stack.create_case(slow_steps(6, 0.5))
    execution_id = stack.submit(case["id"])["id"]

    messages = reconnecting_client(
        stack,
        execution_id,
        first_take=4,  # QUEUED, RUNNING, step 1, step 2
        wait_sql="SELECT count(*) FROM step_traces WHERE execution_id = :id",
        wait_rows=4,
    )

    events, closing = messages[:-1], messages[-1]
    ids = [m.id for m in events]
    assert ids == list(range(1, len(events) + 1)), "strictly increasing, no gap, no duplicate"
    assert stood_for(events) == database_rows(stack, [execution_id])
    assert len(events) == 3 + 6, "QUEUED, RUNNING, six steps, PASSED"
    logged = stack.sql(
        "SELECT seq FROM execution_events WHERE root_execution_id = :id ORDER BY seq",
        id=uuid.UUID(execution_id),
    )
    assert [row[0] for row in logged] == ids
    assert closing.data == {"execution_id": execution_id, "status": "PASSED"}
    assert stack.get(execution_id)["status"] == "PASSED"


def test_a_suite_stream_resumed_mid_run_carries_every_event_of_every_member(stack: Stack) -> None:
    cases = [
        stack.create_case(slow_steps(3, 0.3), name=f"sse-member-{i}-{uuid.uuid4().hex[:6]}") for i in range(3)
    ]
    created = stack.client.post(
        "/api/v1/test-suites",
        json={"name": f"sse-suite-{uuid.uuid4().hex[:6]}", "case_ids": [c["id"] for c in cases]},
    )
    assert created.status_code == 201, created.text
    submitted = stack.client.post("/api/v1/executions/suite", json={"test_suite_id": created.json()["id"]})
    assert submitted.status_code == 201, submitted.text
    suite_id = submitted.json()["id"]

    messages = reconnecting_client(
        stack,
        suite_id,
        first_take=6,  # the four QUEUED events, then whatever comes next
        wait_sql="SELECT count(*) FROM step_traces s JOIN executions e ON e.id = s.execution_id "
        "WHERE e.root_execution_id = :id",
        wait_rows=5,
    )

    events, closing = messages[:-1], messages[-1]
    member_ids = [
        str(r[0])
        for r in stack.sql(
            "SELECT id FROM executions WHERE parent_execution_id = :id", id=uuid.UUID(suite_id)
        )
    ]
    assert len(member_ids) == 3
    assert [m.id for m in events] == list(range(1, len(events) + 1))
    assert stood_for(events) == database_rows(stack, [suite_id, *member_ids])
    assert {m.data["execution_id"] for m in events} == {suite_id, *member_ids}
    assert sum(m.event == "step" for m in events) == 9
    assert closing.data == {"execution_id": suite_id, "status": "PASSED"}
    # The suite's own last event is its final transition: nothing of the run comes after it.
    assert (events[-1].data["execution_id"], events[-1].data["to"]) == (suite_id, "PASSED")


def test_the_junit_export_of_the_pytest_example_counts_what_pytest_counts(
    stack: Stack, tmp_path: Path
) -> None:
    workspace = stack.root / "workspaces" / "pytest-demo"
    shutil.copytree(EXAMPLES / "pytest-demo", workspace)
    own = tmp_path / "own" / "pytest.xml"
    own.parent.mkdir()
    # pytest on its own, as a developer runs it, at the same time as Anvil runs the same tests.
    direct = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={own}"],
        cwd=EXAMPLES / "pytest-demo",
        env={"PATH": os.environ["PATH"], "HOME": str(own.parent), "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    body = {
        "name": f"pytest-demo-{uuid.uuid4().hex[:6]}",
        "kind": "pytest",
        "spec": {"workspace": "pytest-demo", "args": ["-v"]},
        "timeout_s": 120,
    }
    created = stack.client.post("/api/v1/test-cases", json=body)
    assert created.status_code == 201, created.text
    execution_id = stack.submit(created.json()["id"])["id"]
    assert stack.wait_final(execution_id)["status"] == "FAILED"
    assert direct.wait(120) == 1

    response = stack.client.get(f"/api/v1/executions/{execution_id}/junit.xml")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    ours = JUnitXml.fromstring(response.content)
    theirs = JUnitXml.fromfile(str(own))

    (suite,) = list(ours)
    (their_suite,) = list(theirs)
    shape = [(s.tests, s.failures, s.errors, s.skipped) for s in (suite, their_suite)]
    assert shape[0] == shape[1] == (16, 3, 3, 3)
    assert sorted((c.classname, c.name, [type(r).__name__ for r in c.result]) for c in suite) == sorted(
        (c.classname, c.name, [type(r).__name__ for r in c.result]) for c in their_suite
    )
