"""Fault 7: a test that forks a background process and then exceeds its timeout.

The execution ends TIMEOUT, and no process of it survives: every process carrying the test's unique
marker in its environment (the shell, its foreground and its background ``sleep``) is gone.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.faults.conftest import FaultStackFactory, processes_with
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault


def test_a_timed_out_test_leaves_no_process_behind(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=1, concurrency=2)
    marker = f"fault7-{uuid.uuid4().hex}"
    case = stack.create_case(
        [
            stack.detector_step(0.1),
            {
                "name": "forks and hangs",
                "run": ["sh", "-c", "sleep 600 & sleep 600"],
                "env": {**stack.step_env(), "FAULT_MARKER": marker},
                "timeout_s": 3,
            },
        ],
        workspace="fault",
        timeout_s=30,
    )
    entry = stack.ledger.submit(stack.client, case["id"])
    assert entry.status_code == 201, entry.error

    # The marked processes appear while the test runs...
    deadline = time.monotonic() + 60
    while not processes_with(f"FAULT_MARKER={marker}".encode()):
        status = stack.get(entry.execution_id or "")["status"]
        assert status in ("QUEUED", "RUNNING"), f"ended {status} before its processes were seen"
        assert time.monotonic() < deadline, "the test's processes never appeared"
        time.sleep(0.05)
    # The first one seen may be the shell before it has forked its sleeps: look a little longer.
    seen, until = 0, time.monotonic() + 2
    while seen < 2 and time.monotonic() < until:
        seen = max(seen, len(processes_with(f"FAULT_MARKER={marker}".encode())))
        time.sleep(0.02)

    figures = stack.check(timeout=60)
    execution = stack.get(entry.execution_id or "", include="steps")
    # ...and none of them is left once the execution has finished.
    survivors = processes_with(f"FAULT_MARKER={marker}".encode())
    figures.update(processes_seen=seen, survivors=len(survivors))
    report("fault7_timeout_kills_background", figures)

    assert execution["status"] == "TIMEOUT", execution
    assert [s["status"] for s in execution["steps"]] == ["passed", "timeout"]
    assert "process group killed" in (execution["steps"][1]["error"] or "")
    assert seen >= 2, "expected the shell and its sleeps"
    assert survivors == [], f"processes of the timed-out test survived: {survivors}"
    assert_clean(figures)
