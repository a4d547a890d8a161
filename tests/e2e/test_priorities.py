"""A busy worker picks the highest-priority queue first when its slot frees up."""

from __future__ import annotations

from datetime import datetime

from tests.e2e.conftest import StackFactory


def started(execution: dict) -> datetime:
    return datetime.fromisoformat(execution["started_at"])


def test_critical_overtakes_queued_lows(make_stack: StackFactory) -> None:
    stack = make_stack(workers=1, concurrency=1)
    slow = stack.create_case([{"name": "busy", "run": ["sleep", "4"]}], name="slow")
    quick = stack.create_case([{"name": "quick", "run": ["true"]}], name="quick")

    # The only slot is taken ...
    busy = stack.submit(slow["id"])
    stack.wait_status(busy["id"], {"RUNNING"})
    # ... while 20 LOW executions queue up, then a CRITICAL one arrives.
    lows = [stack.submit(quick["id"], priority="LOW")["id"] for _ in range(20)]
    critical = stack.submit(quick["id"], priority="CRITICAL")

    done = {i: stack.wait_final(i) for i in [busy["id"], critical["id"], *lows]}
    assert {e["status"] for e in done.values()} == {"PASSED"}
    submitted_at = datetime.fromisoformat(critical["created_at"])
    # The LOWs that had not started when the CRITICAL was submitted: normally all 20, as the slow
    # case holds the slot for 4 s; fewer only if the machine was too slow to submit them in time.
    overtaken = sorted(started(done[i]) for i in lows if started(done[i]) > submitted_at)
    assert len(overtaken) >= 15, f"only {len(overtaken)} LOWs were still waiting; the check means little"
    critical_started = started(done[critical["id"]])
    assert critical_started < overtaken[0], (
        f"CRITICAL started at {critical_started}, after "
        f"{sum(t < critical_started for t in overtaken)} of the {len(overtaken)} LOWs queued before it"
    )
    assert started(done[busy["id"]]) < critical_started
