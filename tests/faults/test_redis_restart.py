"""Fault 3: Redis killed and restarted EMPTY with 200 executions queued: all 200 finish.

No worker runs while the 200 are submitted, so their messages wait in Redis; then Redis is SIGKILLed
(no persistence) and started again on the same port, empty. Only PostgreSQL knows the executions
exist: the scheduler tick re-publishes QUEUED executions nobody claimed, and the workers started
afterwards run every one of them exactly once.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

EXECUTIONS = 200


def test_redis_restarted_empty_with_everything_queued(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=0)
    assert stack.redis_server is not None
    case = stack.detector_case(0.1)
    stack.submit_many(case["id"], EXECUTIONS)
    assert stack.ledger.codes() == {201: EXECUTIONS}, stack.ledger.codes()
    client = redis.Redis.from_url(stack.redis_url)
    queued_messages = client.llen("normal")
    client.close()
    assert queued_messages >= EXECUTIONS

    stack.redis_server.kill()
    stack.redis_server.start()
    client = redis.Redis.from_url(stack.redis_url)
    assert client.llen("normal") == 0 and client.dbsize() == 0, "Redis came back with data"
    client.close()

    restarted = time.monotonic()
    for _ in range(2):
        stack.spawn_worker(concurrency=3)
    # 45-60 s here; up to four times that with the flood running beside it on a slow day.
    figures = stack.check(timeout=400)
    figures.update(
        messages_before_kill=queued_messages,
        all_finished_after_restart_s=round(time.monotonic() - restarted, 1),
        publishes=stack.sql("SELECT sum(publish_count) FROM executions")[0][0],
    )
    report("fault3_redis_restarted_empty", figures)

    assert figures["statuses"] == {"PASSED": EXECUTIONS}, figures["statuses"]
    assert figures["max_attempt"] == 1
    assert figures["detector_runs"] == EXECUTIONS
    assert_clean(figures)
