"""Suites through real processes: the API, two `anvil worker`s and `anvil beat`."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

from tests.e2e.conftest import FINAL, Stack, StackFactory

SUITE_TIMEOUT_S = 120.0


def create_suite(stack: Stack, cases: list[dict[str, Any]], *, fail_fast: bool = False) -> dict[str, Any]:
    body = {
        "name": f"suite-{time.monotonic_ns()}",
        "case_ids": [c["id"] for c in cases],
        "fail_fast": fail_fast,
    }
    response = stack.client.post("/api/v1/test-suites", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def run_suite(stack: Stack, suite: dict[str, Any]) -> dict[str, Any]:
    """Submit the suite and wait for its final status; returns the finished suite execution."""
    response = stack.client.post("/api/v1/executions/suite", json={"test_suite_id": suite["id"]})
    assert response.status_code == 201, response.text
    return stack.wait_status(response.json()["id"], FINAL, timeout=SUITE_TIMEOUT_S)


def members(stack: Stack, suite_execution_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(
        "/api/v1/executions", params={"parent_execution_id": suite_execution_id, "limit": 200}
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def sleeping_cases(stack: Stack, n: int, *, seconds: float) -> list[dict[str, Any]]:
    return [
        stack.create_case([{"name": "work", "run": ["sleep", str(seconds)]}], name=f"sleep-{i:02d}")
        for i in range(n)
    ]


def test_a_fifty_case_suite_spreads_over_both_workers_and_passes(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, concurrency=2)
    suite = create_suite(stack, sleeping_cases(stack, 50, seconds=0.2))

    finished = run_suite(stack, suite)

    assert finished["status"] == "PASSED", finished
    assert finished["progress"] == {"total": 50, "done": 50, "by_status": {"PASSED": 50}}
    assert finished["started_at"] and finished["finished_at"]
    children = members(stack, finished["id"])
    assert len(children) == 50 and {c["status"] for c in children} == {"PASSED"}
    # Workers record "<celery node name>/<pid>"; both nodes took a share of the suite.
    nodes = Counter(c["worker"].split("/")[0] for c in children)
    assert len(nodes) == 2, nodes
    # The suite finished exactly once, after its last member.
    statuses = [t["to_status"] for t in stack.get(finished["id"], include="transitions")["transitions"]]
    assert statuses == ["QUEUED", "RUNNING", "PASSED"]
    last_member = max(datetime.fromisoformat(c["finished_at"]) for c in children)
    assert datetime.fromisoformat(finished["finished_at"]) >= last_member


def test_one_failing_member_fails_the_suite_with_correct_counts(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, concurrency=2)
    cases = sleeping_cases(stack, 5, seconds=0.1)
    cases.insert(2, stack.create_case([{"name": "boom", "run": ["sh", "-c", "exit 3"]}], name="failing"))
    suite = create_suite(stack, cases)

    finished = run_suite(stack, suite)

    assert finished["status"] == "FAILED", finished
    assert finished["progress"] == {"total": 6, "done": 6, "by_status": {"FAILED": 1, "PASSED": 5}}
    assert finished["error"] == "5 of 6 members passed or skipped"
    by_case = {c["test_case_name"]: c["status"] for c in members(stack, finished["id"])}
    assert by_case.pop("failing") == "FAILED" and set(by_case.values()) == {"PASSED"}


def test_fail_fast_cancels_the_members_that_had_not_started(make_stack: StackFactory) -> None:
    # Two workers running one test each: while the first member fails, at most one other is running.
    stack = make_stack(workers=2, concurrency=1)
    failing = stack.create_case([{"name": "boom", "run": ["false"]}], name="failing")
    suite = create_suite(stack, [failing, *sleeping_cases(stack, 9, seconds=1)], fail_fast=True)

    finished = run_suite(stack, suite)

    assert finished["status"] == "FAILED", finished
    children = members(stack, finished["id"])
    counts = Counter(c["status"] for c in children)
    assert counts["FAILED"] == 1 and set(counts) <= {"FAILED", "PASSED", "CANCELLED"}, counts
    never_started = [c for c in children if c["started_at"] is None]
    # Every member that had not started was cancelled and never ran on a worker.
    assert all(c["status"] == "CANCELLED" and c["worker"] is None for c in never_started)
    assert counts["CANCELLED"] == len(never_started) >= 7, counts
    assert finished["progress"] == {"total": 10, "done": 10, "by_status": dict(sorted(counts.items()))}
