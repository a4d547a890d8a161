"""One pytest or BDD case split into shards across two workers, end to end.

The counts of a sharded run must equal pytest's own on the same tests, every test must run exactly
once (in exactly one shard), and the parent must finish once, like a suite, with every test of
every shard under it: its summary, JUnit report and test history.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Stack, StackFactory
from tests.e2e.test_pytest_runner import add_workspace, pytest_case, steps_of

FILES = {
    "tests/test_math.py": """
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_square(n):
            assert n * n >= 0

        def test_wrong():
            assert 2 + 2 == 5
    """,
    "tests/test_text.py": """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture is broken")

        def test_upper():
            assert "a".upper() == "A"

        def test_uses_broken(broken):
            pass

        @pytest.mark.skip(reason="not today")
        def test_later():
            pass

        def test_also_wrong():
            assert [] == [1]
    """,
    "tests/test_more.py": """
        import pytest

        def test_one():
            pass

        def test_two():
            pass

        def test_skipped_inside():
            pytest.skip("no backend")
    """,
}
# What pytest itself says of these tests: its own closing summary line.
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?)")


def pytest_counts(workspace: Any) -> dict[str, int]:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests"],
        cwd=workspace, capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    last = run.stdout.strip().splitlines()[-1]
    return {("error" if kind.startswith("error") else kind): int(n) for n, kind in SUMMARY.findall(last)}


def children(stack: Stack, parent_id: str) -> list[dict[str, Any]]:
    page = stack.client.get("/api/v1/executions", params={"parent_execution_id": parent_id, "limit": 100})
    assert page.status_code == 200, page.text
    return list(page.json()["items"])


def submit_sharded(stack: Stack, case_id: str, shards: int | str) -> str:
    response = stack.client.post("/api/v1/executions/case", json={"test_case_id": case_id, "shards": shards})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def two_workers(make_stack: StackFactory) -> Stack:
    return make_stack(workers=2, concurrency=1)


def test_a_sharded_pytest_case_counts_what_pytest_counts(two_workers: Stack) -> None:
    stack = two_workers
    workspace = add_workspace(stack, "shop", FILES)
    case_id = pytest_case(stack, "shop", ["tests"])
    parent_id = submit_sharded(stack, case_id, 2)
    parent = stack.wait_final(parent_id, timeout=120)

    assert parent["status"] == "FAILED", parent["error"]
    plan = parent["shard_plan"]
    assert plan["count"] == 2 and plan["tests"] == 14
    shards = children(stack, parent_id)
    assert sorted(s["trigger_kind"] for s in shards) == ["shard", "shard"]
    assert {s["run_id"] for s in shards} == {parent["run_id"]}
    assert {s["correlation_id"] for s in shards} == {parent["correlation_id"]}
    # Both workers took a shard: one slot each, and the parent's planning freed its slot.
    assert len({s["worker"].split("/")[0] for s in shards}) == 2

    # Every test ran exactly once, in one shard, and only what the plan gave that shard.
    ran: Counter[str] = Counter()
    for shard in shards:
        names = [step["name"] for step in steps_of(stack, shard["id"])]
        assert sorted(names) == sorted(stack.get(shard["id"])["selection"]["tests"])
        ran.update(names)
    assert len(ran) == 14 and set(ran.values()) == {1}
    assert steps_of(stack, parent_id) == []  # the parent itself runs nothing

    expected = pytest_counts(workspace)
    assert expected == {"passed": 9, "failed": 2, "skipped": 2, "error": 1}
    summary = parent["summary"]
    assert {k: summary.get(k, 0) for k in expected} == expected and summary["total"] == 14
    assert summary["shards"]["done"] == 2 and summary["shards"]["imbalance"] >= 1.0
    assert parent["progress"]["total"] == 2

    # The JUnit report of the parent holds every test of every shard.
    junit = stack.client.get(f"/api/v1/executions/{parent_id}/junit.xml").text
    assert junit.count("<testcase ") == 14 and 'failures="1"' in junit

    # The history records each test once, under the parent.
    rows = stack.sql(
        "SELECT count(*), count(DISTINCT test_id) FROM test_results WHERE root_execution_id = :root",
        root=uuid.UUID(parent_id),
    )
    assert tuple(rows[0]) == (14, 14)


def test_cancelling_the_parent_cancels_every_shard(two_workers: Stack) -> None:
    stack = two_workers
    slow = "\n".join(f"def test_slow_{i}():\n    import time; time.sleep(30)\n" for i in range(4))
    add_workspace(stack, "slow", {"tests/test_slow.py": slow})
    case_id = pytest_case(stack, "slow", ["tests"])
    parent_id = submit_sharded(stack, case_id, 2)
    for _ in range(600):  # until both shards run
        shards = children(stack, parent_id)
        if len(shards) == 2 and all(s["status"] == "RUNNING" for s in shards):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the shards did not both start: {children(stack, parent_id)}")
    response = stack.client.post(f"/api/v1/executions/{parent_id}/cancel")
    assert response.status_code in (200, 202), response.text
    assert stack.wait_final(parent_id)["status"] == "CANCELLED"
    for shard in children(stack, parent_id):
        assert stack.wait_final(shard["id"])["status"] == "CANCELLED"


def test_shards_only_for_pytest_and_bdd(stack: Stack) -> None:
    case = stack.create_case([{"name": "ok", "run": ["true"]}])
    response = stack.client.post("/api/v1/executions/case", json={"test_case_id": case["id"], "shards": 2})
    assert response.status_code == 422
    assert response.json()["field"] == "body.shards" or "shards" in response.text
    bad = stack.client.post("/api/v1/executions/case", json={"test_case_id": case["id"], "shards": 0})
    assert bad.status_code == 422 and "shards must be a whole number from 1 to 64" in bad.text
