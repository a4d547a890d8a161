"""Fault 4: PostgreSQL stopped and started again during a burst of submissions from several threads.

While it is down the API must answer 503 quickly (never 500, never a hang), and every execution it
accepted (201) must have a row and finish. Workers, the beat and the tests' detectors lose their
connections too; whatever was running at the time ends somehow (passed, or failed/aborted) but is
never lost, run twice at once, or traced twice.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

THREADS = 4
DOWN_S = 4.0
MAX_ACCEPTED = 120
PACE_S = 0.3  # per thread: about 13 submissions a second, so the burst spans the outage
LONG = 3
FAST_FAILURE_S = 5.0


def test_postgres_restart_during_a_submission_burst(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    assert stack.pg is not None
    case = stack.detector_case(0.2)
    # Running while PostgreSQL goes away: their workers cannot renew the lease and stop them.
    long_case = stack.detector_case(8)
    long_runs = [stack.ledger.submit(stack.client, long_case["id"]) for _ in range(LONG)]
    stack.wait_status(long_runs[-1].execution_id or "", {"RUNNING"})
    stop = threading.Event()

    def submitter() -> None:
        while not stop.is_set() and len(stack.ledger.accepted) < MAX_ACCEPTED:
            stack.ledger.submit(stack.client, case["id"])
            time.sleep(PACE_S)

    threads = [threading.Thread(target=submitter, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        down_at = time.monotonic()
        stack.pg.stop("fast")
        time.sleep(DOWN_S)
        stack.pg.start()
        up_at = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    during = len([e for e in stack.ledger.entries if e.status_code != 201])

    figures = stack.check(timeout=150)
    failed = [e for e in stack.ledger.entries if e.status_code != 201]
    figures.update(
        down_s=round(up_at - down_at, 1),
        failed_requests=len(failed),
        max_failed_latency_s=round(max((e.latency_s for e in failed), default=0.0), 2),
        max_latency_s=round(max(e.latency_s for e in stack.ledger.entries), 2),
    )
    long_ends = [stack.get(e.execution_id or "") for e in long_runs]
    figures.update(long_runs=[f"{e['status']}@{e['attempt']}" for e in long_ends])
    report("fault4_postgres_restart_during_burst", figures)

    codes = stack.ledger.codes()
    assert set(codes) <= {201, 503}, f"answers other than 201/503: {codes}; e.g. {failed[:3]}"
    assert codes[503] >= 1 and during >= 1, "no request hit the outage"
    assert figures["max_failed_latency_s"] <= FAST_FAILURE_S, figures
    assert figures["max_latency_s"] <= FAST_FAILURE_S + 3, figures
    assert figures["accepted"] >= 20
    # The long runs lost their lease while PostgreSQL was away: fenced, then run again and passed.
    assert all(e["status"] == "PASSED" and e["attempt"] >= 2 for e in long_ends), figures["long_runs"]
    assert_clean(figures)
