"""Fault 8: a test that kills its own worker process on every attempt, beside 50 normal executions.

The test's step SIGKILLs its parent, the Celery pool process running it (the sandbox's ``setpriv``
execs the test, so the parent is the pool process itself; the step checks that before killing).
Every attempt dies the same way, the lease sweep re-queues it until the attempt cap, then it ends
ABORTED with the reason. The 50 normal executions submitted at the same time all pass at their first
attempt: losing one pool process does not disturb the others.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

NORMAL = 50
# Kill the parent only if it is an Anvil worker process (never anything else by mistake).
KILL_MY_WORKER = "case \"$(tr '\\0' ' ' < /proc/$PPID/cmdline)\" in *anvil*) kill -9 $PPID;; esac; sleep 30"


def test_a_test_that_kills_its_worker_is_aborted_after_the_cap(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    killer_case = stack.create_case(
        [{"name": "kill my worker", "run": ["sh", "-c", KILL_MY_WORKER], "env": stack.step_env()}],
        workspace="fault",
        timeout_s=60,
    )
    normal_case = stack.detector_case(0.2)
    killer = stack.ledger.submit(stack.client, killer_case["id"])
    assert killer.status_code == 201, killer.error
    stack.submit_many(normal_case["id"], NORMAL)

    figures = stack.check(timeout=120)
    execution = stack.get(killer.execution_id or "", include="steps,transitions")
    normal = stack.sql(
        "SELECT status, attempt FROM executions WHERE test_case_id = :case", case=normal_case["id"]
    )
    figures.update(
        killer_status=execution["status"],
        killer_attempts=execution["attempt"],
        normal=len(normal),
        normal_passed_first_attempt=sum(1 for s, a in normal if s == "PASSED" and a == 1),
    )
    report("fault8_test_kills_its_worker", figures)

    assert execution["status"] == "ABORTED", execution
    assert execution["attempt"] == execution["max_attempts"] == 3
    assert execution["error"] and "worker_lost" in execution["error"]
    to_statuses = [t["to_status"] for t in execution["transitions"]]
    assert to_statuses == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "QUEUED", "RUNNING", "ABORTED"]
    assert execution["steps"] == []  # no attempt lived to record its step
    assert figures["normal_passed_first_attempt"] == NORMAL, normal
    assert all(w.alive() for w in stack.workers), "a worker's main process died"
    assert_clean(figures)
