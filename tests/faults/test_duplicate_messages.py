"""Fault 6: every message published three times while the workers run: one attempt each, no duplicate steps.

Each accepted execution's id is published twice more, straight onto its queue with a Celery app of
our own (as a redelivery or a double publish would), right after the API published it. The copies
race each other onto the two workers' four slots; the claim in PostgreSQL lets exactly one of them run.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

EXECUTIONS = 60
COPIES = 3


def test_every_message_published_three_times(make_fault_stack: FaultStackFactory) -> None:
    from anvil.settings import Settings
    from workers.celery_app import RUN_TASK, make_celery

    stack = make_fault_stack(workers=2, concurrency=2)
    case = stack.detector_case(0.2)
    app = make_celery(Settings(redis_url=stack.redis_url, database_url=stack.database_url))
    try:
        for _ in range(EXECUTIONS):
            entry = stack.ledger.submit(stack.client, case["id"])
            assert entry.status_code == 201, entry.error
            for _ in range(COPIES - 1):
                app.send_task(RUN_TASK, args=[entry.execution_id], queue="normal", routing_key="normal")
    finally:
        app.close()

    figures = stack.check(timeout=120)
    # Every copy was delivered and acknowledged (so each had its chance to run it again).
    client = redis.Redis.from_url(stack.redis_url)
    deadline = time.monotonic() + 60
    while client.llen("normal") or client.hlen("unacked"):
        assert time.monotonic() < deadline, "copies still waiting in Redis"
        time.sleep(0.2)
    client.close()
    logs = "".join(w.log_path.read_text(errors="replace") for w in stack.workers if w.log_path)
    dropped = logs.count("'not claimed'")
    figures.update(
        messages=EXECUTIONS * COPIES,
        copies_dropped=dropped,
        steps=stack.sql("SELECT count(*) FROM step_traces")[0][0],
    )
    report("fault6_every_message_three_times", figures)

    assert figures["statuses"] == {"PASSED": EXECUTIONS}, figures["statuses"]
    assert figures["max_attempt"] == 1, "an execution was claimed twice"
    assert figures["detector_runs"] == EXECUTIONS
    assert figures["steps"] == EXECUTIONS
    # Every extra copy (and any re-publish by the reconciler) lost the claim and was dropped.
    assert dropped >= EXECUTIONS * (COPIES - 1), dropped
    assert_clean(figures)
