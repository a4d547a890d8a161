"""Fault: runs longer than the broker's visibility timeout, which is set to 5 s.

Redis hands a message its worker has not acknowledged (Anvil acknowledges late, when the run ends) to a
worker again once the visibility timeout passed. With ANVIL_BROKER_VISIBILITY_TIMEOUT_S=5 every run of
12 s is redelivered while it runs; the redelivered message finds the execution claimed and is dropped.
The test proves the redeliveries happened (the same Celery task id received more than once in the
workers' logs) and that none of them ran a test a second time: 0 overlaps, 0 detector collisions, one
attempt and one detector run per execution, all PASSED.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

VISIBILITY_TIMEOUT_S = 5
RUN_S = 12.0
EXECUTIONS = 12
RECEIVED = re.compile(r"Task anvil\.run_execution\[([0-9a-f-]+)\] received")


def test_runs_longer_than_the_visibility_timeout_run_once(
    make_fault_stack: FaultStackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's processes inherit this environment: workers (and the API's publisher) use 5 s.
    monkeypatch.setenv("ANVIL_BROKER_VISIBILITY_TIMEOUT_S", str(VISIBILITY_TIMEOUT_S))
    stack = make_fault_stack(workers=2, concurrency=2)
    case = stack.detector_case(RUN_S)
    stack.submit_many(case["id"], EXECUTIONS)

    figures = stack.check(timeout=240)
    receipts = _receipts(stack)
    figures.update(
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        run_s=RUN_S,
        deliveries=sum(receipts.values()),
        redeliveries=sum(n - 1 for n in receipts.values()),
        messages_redelivered=sum(1 for n in receipts.values() if n > 1),
    )
    report("fault_visibility_timeout_5s", figures)

    assert figures["accepted"] == EXECUTIONS, figures["http_codes"]
    # The fault really happened: each run outlived the timeout, so each message came back at least once.
    assert figures["messages_redelivered"] >= EXECUTIONS // 2, figures
    assert figures["overlaps"] == 0 and figures["collisions"] == 0, figures
    assert figures["max_attempt"] == 1, figures
    assert figures["statuses"] == {"PASSED": EXECUTIONS}, figures["statuses"]
    assert figures["detector_runs"] == EXECUTIONS, "a redelivered message ran a test again"
    assert_clean(figures)


def _receipts(stack: FaultStack) -> Counter[str]:
    """How many times each Celery task id (one per publish) reached a worker."""
    seen: Counter[str] = Counter()
    for worker in stack.workers:
        assert worker.log_path is not None
        seen.update(RECEIVED.findall(worker.log_path.read_text(errors="replace")))
    return seen
