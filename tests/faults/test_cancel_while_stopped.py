"""Fault 9: cancel while every worker is stopped; after the workers restart, the execution never runs.

Cancellation lives in PostgreSQL, so it survives whatever happens to the processes. Three executions
are submitted after the only worker was stopped (their messages wait in Redis, and a second copy of
each is published, as a redelivery would) and cancelled through the API; a fourth was running
when its worker was SIGKILLed and is cancelled while no worker exists. Then two workers start and
consume every message: the waiting ones are dropped (the claim finds them CANCELLED), and the lease
sweep ends the orphaned one CANCELLED instead of running it again.
"""

from __future__ import annotations

import time

import pytest
import redis

from anvil.cli.processes import Child
from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

WAITING = 3


def test_cancelled_while_no_worker_runs_never_runs(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=1, concurrency=2)
    case = stack.detector_case(0.2)
    long_case = stack.detector_case(30)

    running = stack.ledger.submit(stack.client, long_case["id"])
    assert running.status_code == 201, running.error
    running_id = running.execution_id or ""
    deadline = time.monotonic() + 60
    while not stack.sql("SELECT 1 FROM detector_runs WHERE execution_id = :id", id=running_id):
        assert time.monotonic() < deadline, "the long execution never started"
        time.sleep(0.1)
    stack.workers[0].kill()  # every worker is gone now

    waiting = [stack.ledger.submit(stack.client, case["id"]) for _ in range(WAITING)]
    waiting_ids = [w.execution_id or "" for w in waiting]
    assert all(w.status_code == 201 for w in waiting)
    # A second copy of each (the reconciler no longer copies messages still waiting in Redis).
    for execution_id in waiting_ids:
        stack.publish(execution_id, "NORMAL")
    for execution_id in [*waiting_ids, running_id]:
        response = stack.client.post(f"/api/v1/executions/{execution_id}/cancel", json={"reason": "fault 9"})
        assert response.status_code == 200, response.text
    publishes = (
        stack.sql("SELECT sum(publish_count) FROM executions WHERE id = ANY(:ids)", ids=waiting_ids)[0][0]
        + WAITING
    )

    for _ in range(2):
        stack.spawn_worker(concurrency=2)
    figures = stack.check(timeout=60)
    # Every message of the cancelled executions reaches a new worker, which drops it.
    deadline = time.monotonic() + 60
    while (dropped := _dropped(stack.workers[1:])) < publishes:
        assert time.monotonic() < deadline, f"only {dropped} of {publishes} messages were consumed"
        time.sleep(0.2)
    client = redis.Redis.from_url(stack.redis_url)
    left = client.llen("normal")
    client.close()
    executions = {i: stack.get(i, include="steps,transitions") for i in [*waiting_ids, running_id]}
    figures.update(
        cancelled_waiting=WAITING,
        cancelled_running=1,
        messages_for_cancelled=publishes,
        dropped_by_new_workers=dropped,
    )
    report("fault9_cancel_while_workers_stopped", figures)

    for execution_id in waiting_ids:
        execution = executions[execution_id]
        assert execution["status"] == "CANCELLED", execution
        assert [t["to_status"] for t in execution["transitions"]] == ["QUEUED", "CANCELLED"]
        assert execution["attempt"] == 0 and execution["steps"] == []
    orphan = executions[running_id]
    assert orphan["status"] == "CANCELLED", orphan
    assert [t["to_status"] for t in orphan["transitions"]] == ["QUEUED", "RUNNING", "CANCELLED"]
    assert orphan["attempt"] == 1
    # The test process ran once (the long one, before its worker died), the cancelled ones never.
    assert stack.sql("SELECT execution_id FROM detector_runs") == [(running_id,)]
    assert left == 0, f"{left} messages still wait in Redis"
    assert_clean(figures)


def _dropped(workers: list[Child]) -> int:
    """Messages these workers consumed and dropped because the claim found nothing to run."""
    return sum(w.log_path.read_text(errors="replace").count("'not claimed'") for w in workers if w.log_path)
