"""A flood of 10,000 submissions, as fast as the API takes them, into a Redis capped at
``maxmemory 64mb`` with ``noeviction``: every execution finishes, Redis evicts nothing, and a CRITICAL
canary submitted while the flood waits in the queues starts within 10 s.

The flood goes in through the batch endpoint (500 executions a request, several requests at once)
while two workers already run them; the case is one trivial step (``true``). Redis must hold every
message without evicting one (an evicted message would only delay its execution: the reconciler
publishes QUEUED executions again, but ``evicted_keys`` must stay 0). The canary's priority queue is
consumed first, so it waits only for a free slot, not behind the backlog. The run takes minutes on
two cores: the figures report its throughput.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import Submission, assert_clean, report

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(3600)]

EXECUTIONS = 10_000
BATCH = 500
SUBMIT_THREADS = 4
WORKERS, SLOTS = 2, 4
CANARY_WITHIN_S = 10.0
FINISH_TIMEOUT_S = 3000.0


@pytest.fixture
def capped_redis(make_fault_stack: FaultStackFactory) -> Iterator[FaultStack]:
    """The stack, its Redis capped at 64 MB without eviction; the session's Redis is reset afterwards."""
    stack = make_fault_stack(workers=WORKERS, concurrency=SLOTS)
    client = redis.Redis.from_url(stack.redis_url)
    client.config_set("maxmemory", "64mb")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_resetstat()
    try:
        yield stack
    finally:
        client.config_set("maxmemory", "0")
        client.close()


def submit_batch(stack: FaultStack, case_id: str) -> None:
    began = time.monotonic()
    body = {"items": [{"test_case_id": case_id}] * BATCH}
    # A generous read timeout: a batch that timed out here may still have committed, and the
    # ledger could not say which (30 s was not enough with three fault stacks on a slow machine).
    response = stack.client.post("/api/v1/executions/batch", json=body, timeout=180)
    latency = time.monotonic() - began
    if response.status_code != 201:
        stack.ledger.entries.append(Submission(response.status_code, None, latency, response.text[:300]))
        return
    stack.ledger.entries.extend(Submission(201, item["id"], latency) for item in response.json()["items"])


def canary_start_s(stack: FaultStack, execution_id: str) -> float | None:
    """Seconds from the canary's creation to its RUNNING transition (None: it never ran)."""
    rows = stack.sql(
        "SELECT EXTRACT(EPOCH FROM (t.at - e.created_at)) FROM executions e "
        "JOIN execution_transitions t ON t.execution_id = e.id AND t.to_status = 'RUNNING' "
        "WHERE e.id = :id ORDER BY t.id LIMIT 1",
        id=execution_id,
    )
    return float(rows[0][0]) if rows else None


def redis_figures(client: redis.Redis) -> dict[str, Any]:
    stats, memory = client.info("stats"), client.info("memory")
    return {
        "evicted_keys": stats["evicted_keys"],
        "rejected_writes_oom": client.info("errorstats").get("errorstat_OOM", {}).get("count", 0),
        "redis_peak_mb": round(memory["used_memory_peak"] / 2**20, 1),
        "redis_maxmemory_mb": round(memory["maxmemory"] / 2**20, 1),
    }


def test_a_flood_of_10000_into_a_capped_redis(capped_redis: FaultStack) -> None:
    stack = capped_redis
    case = stack.create_case([{"name": "trivial", "run": ["true"]}], workspace="fault")
    client = redis.Redis.from_url(stack.redis_url)
    started = time.monotonic()
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        list(pool.map(lambda _: submit_batch(stack, case["id"]), range(EXECUTIONS // BATCH)))
    submitted_s = time.monotonic() - started
    backlog = stack.sql("SELECT count(*) FROM executions WHERE status = 'QUEUED'")[0][0]
    messages = sum(client.llen(key) for key in client.scan_iter(match="normal*"))

    canary = stack.ledger.submit(stack.client, case["id"], priority="CRITICAL")
    assert canary.status_code == 201, canary.error
    stack.wait_status(canary.execution_id or "", {"RUNNING", "PASSED"}, timeout=60)

    figures = stack.check(timeout=FINISH_TIMEOUT_S)
    total_s = time.monotonic() - started
    figures.update(
        flood=EXECUTIONS,
        submit_s=round(submitted_s, 1),
        submit_per_s=round(EXECUTIONS / submitted_s),
        backlog_at_canary=backlog,
        messages_at_canary=messages,
        canary_start_s=canary_start_s(stack, canary.execution_id or ""),
        all_finished_s=round(total_s, 1),
        executions_per_s=round((EXECUTIONS + 1) / total_s, 1),
        slots=WORKERS * SLOTS,
        **redis_figures(client),
    )
    client.close()
    report("fault_flood_10000_capped_redis", figures)

    assert stack.ledger.codes() == {201: EXECUTIONS + 1}, stack.ledger.codes()
    assert backlog >= 1000, f"the flood did not wait in the queues ({backlog} QUEUED): no test of the canary"
    assert figures["canary_start_s"] is not None and figures["canary_start_s"] <= CANARY_WITHIN_S, figures
    assert figures["statuses"] == {"PASSED": EXECUTIONS + 1}, figures["statuses"]
    assert figures["evicted_keys"] == 0, figures
    assert_clean(figures)
