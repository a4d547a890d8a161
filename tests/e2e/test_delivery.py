"""Redis only signals "execution X is ready": duplicated or lost messages neither double-run nor lose it."""

from __future__ import annotations

import time

from tests.e2e.conftest import Stack, StackFactory

STEPS = [
    {"name": "one", "run": ["sleep", "0.3"]},
    {"name": "two", "run": ["echo", "two"]},
    {"name": "three", "run": ["true"]},
]


def wait_queue_drained(stack: Stack, queue: str, *, timeout: float = 30.0) -> None:
    """Until no message waits in ``queue`` nor sits delivered-but-unacknowledged."""
    client = stack.redis()
    deadline = time.monotonic() + timeout
    while client.llen(queue) or client.hlen("unacked"):
        assert time.monotonic() < deadline, f"{queue} not drained after {timeout}s"
        time.sleep(0.1)
    client.close()


def publish_count(stack: Stack, execution_id: str) -> int:
    return stack.sql("SELECT publish_count FROM executions WHERE id = :id", id=execution_id)[0][0]


def test_a_message_published_three_times_runs_once(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0)
    case = stack.create_case(STEPS)
    execution_id = stack.submit(case["id"])["id"]
    stack.publish(execution_id, "NORMAL")
    stack.publish(execution_id, "NORMAL")
    client = stack.redis()
    assert client.llen("normal") >= 3
    client.close()

    # Two slots, so the copies can be picked up side by side.
    worker = stack.start_worker(concurrency=2)
    execution = stack.wait_final(execution_id)
    wait_queue_drained(stack, "normal")

    assert execution["status"] == "PASSED", execution
    assert execution["attempt"] == 1
    assert [t["to_status"] for t in execution["transitions"]] == ["QUEUED", "RUNNING", "PASSED"]
    rows = stack.sql(
        "SELECT attempt, seq, name FROM step_traces WHERE execution_id = :id ORDER BY seq", id=execution_id
    )
    assert [tuple(r) for r in rows] == [(1, 1, "one"), (1, 2, "two"), (1, 3, "three")]
    # Every copy reached the worker; all but the one that claimed it were dropped.
    assert worker.log_path is not None
    log = worker.log_path.read_text()
    assert log.count("succeeded in") == log.count("'not claimed'") + 1
    assert log.count("'not claimed'") >= 2


def test_a_message_lost_from_redis_is_published_again(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0)
    case = stack.create_case(STEPS)
    execution_id = stack.submit(case["id"])["id"]
    client = stack.redis()
    assert client.llen("normal") == 1
    before = publish_count(stack, execution_id)
    # Redis forgets the message (a restart without persistence, a flushed key).
    client.delete("normal")
    assert client.llen("normal") == 0
    client.close()

    stack.start_worker()
    execution = stack.wait_final(execution_id)

    assert execution["status"] == "PASSED", execution
    assert execution["attempt"] == 1
    assert publish_count(stack, execution_id) > before
    assert [s["status"] for s in execution["steps"]] == ["passed"] * 3
