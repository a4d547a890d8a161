"""Fault 8: a test that tries to kill its own worker (and every other process it can see), beside 50
normal executions.

Before the sandbox, ``kill -9 $PPID`` killed the Celery pool process running the test, on every
attempt, until the attempt cap aborted it. Under bubblewrap the test is in its own PID namespace, as
another uid: its parent is the namespace's init (root's), the worker is not in its /proc, and no kill
lands. The test ends at its first attempt with its step recorded, both workers keep all their
processes, and the 50 normal executions submitted at the same time all pass at their first attempt.
(Losing a pool process is still covered: tests/faults/test_pool_child_kills.py kills them from outside.)
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import FaultStackFactory, pool_children
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

NORMAL = 50
# SIGKILL everything visible but this shell, then the parent; say what was hit.
KILL_EVERYTHING = (
    'for p in /proc/[0-9]*; do n=${p#/proc/}; if [ "$n" != $$ ] && kill -9 "$n" 2>/dev/null; then '
    'echo "killed $n"; fi; done; if kill -9 $PPID 2>/dev/null; then echo "killed parent"; fi; '
    'echo "visible: $(ls -d /proc/[0-9]* | wc -l)"'
)


def test_a_test_cannot_kill_its_worker(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    pools_before = {w.pid: sorted(pool_children(w.pid)) for w in stack.workers}
    killer_case = stack.create_case(
        [{"name": "kill my worker", "run": ["sh", "-c", KILL_EVERYTHING], "env": stack.step_env()}],
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
    report("fault8_test_tries_to_kill_its_worker", figures)

    assert execution["status"] == "PASSED", execution
    assert execution["attempt"] == 1
    output = execution["steps"][0]["output"]
    assert "killed" not in output, output
    assert [t["to_status"] for t in execution["transitions"]] == ["QUEUED", "RUNNING", "PASSED"]
    assert figures["normal_passed_first_attempt"] == NORMAL, normal
    assert all(w.alive() for w in stack.workers), "a worker's main process died"
    assert {w.pid: sorted(pool_children(w.pid)) for w in stack.workers} == pools_before
    assert_clean(figures)
