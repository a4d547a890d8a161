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
from tests.e2e.test_cli import _at, anvil
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


def bdd_case(stack: Stack, name: str, feature: str, steps: str) -> dict[str, Any]:
    """A BDD case with two shards on the workspace ``name``: features/<name>.feature and its steps."""
    files = {f"features/{name}.feature": feature, f"features/steps/{name}.py": steps}
    add_workspace(stack, name, files)
    spec = {"workspace": name, "feature": f"features/{name}.feature", "shards": 2}
    body = {"name": f"bdd-{uuid.uuid4().hex[:6]}", "kind": "bdd", "spec": spec}
    response = stack.client.post("/api/v1/test-cases", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def two_workers(make_stack: StackFactory) -> Stack:
    return make_stack(workers=2, concurrency=1)


def test_a_sharded_pytest_case_counts_what_pytest_counts(two_workers: Stack) -> None:
    stack = two_workers
    workspace = add_workspace(stack, "shop", FILES)
    case_id = pytest_case(stack, "shop", ["tests"])
    parent_id = submit_sharded(stack, case_id, "auto")  # two live slots: two shards
    parent = stack.wait_final(parent_id, timeout=120)

    assert parent["status"] == "FAILED", parent["error"]
    plan = parent["shard_plan"]
    assert plan["count"] == 2 and plan["tests"] == 14 and plan["requested"] == "auto"
    shards = children(stack, parent_id)
    assert sorted(s["trigger_kind"] for s in shards) == ["shard", "shard"]
    assert {s["run_id"] for s in shards} == {parent["run_id"]}
    assert {s["correlation_id"] for s in shards} == {parent["correlation_id"]}
    assert all(s["status"] in ("PASSED", "FAILED", "SKIPPED") for s in shards)

    # Every test ran exactly once, in one shard, and only what the plan gave that shard.
    ran: Counter[str] = Counter()
    for shard in shards:
        names = [step["name"] for step in steps_of(stack, shard["id"])]
        assert sorted(names) == sorted(stack.get(shard["id"])["selection"]["tests"])
        ran.update(names)
    assert len(ran) == 14 and set(ran.values()) == {1}
    # The parent ran nothing itself; its steps are its shards', each naming the shard that ran it.
    under = steps_of(stack, parent_id)
    assert Counter(s["name"] for s in under) == ran
    assert {s["execution_id"] for s in under} <= {s["id"] for s in shards}

    expected = pytest_counts(workspace)
    assert expected == {"passed": 9, "failed": 2, "skipped": 2, "error": 1}
    summary = parent["summary"]
    assert {k: summary.get(k, 0) for k in expected} == expected and summary["total"] == 14
    assert summary["shards"]["done"] == 2 and summary["shards"]["imbalance"] >= 1.0
    assert parent["progress"]["total"] == 2
    # Planned and actual seconds side by side, shard by shard.
    assert all(s["planned_s"] > 0 and s["actual_s"] > 0 for s in plan["shards"]), plan

    # The JUnit report of the parent holds every test of every shard.
    junit = stack.client.get(f"/api/v1/executions/{parent_id}/junit.xml").text
    assert junit.count("<testcase ") == 14 and junit.count("<testsuite ") == 1, junit

    # The history records each test once, under the parent.
    rows = stack.sql(
        "SELECT count(*), count(DISTINCT test_id) FROM test_results WHERE root_execution_id = :root",
        root=uuid.UUID(parent_id),
    )
    assert tuple(rows[0]) == (14, 14)

    # Retrying only the failed tests runs those three; "auto" gives a shard at least
    # ANVIL_SHARD_MIN_TESTS (5) tests, so three run as one.
    retried = stack.client.post(f"/api/v1/executions/{parent_id}/retry", json={"failed_only": True})
    assert retried.status_code == 201, retried.text
    retry = stack.wait_final(retried.json()["id"], timeout=120)
    assert retry["status"] == "FAILED" and retry["shard_plan"] is None
    assert sorted(s["name"] for s in steps_of(stack, retry["id"])) == sorted(retry["selection"]["tests"])
    assert sorted(retry["selection"]["tests"]) == sorted(
        [
            "tests/test_math.py::test_wrong",
            "tests/test_text.py::test_uses_broken",
            "tests/test_text.py::test_also_wrong",
        ]
    )
    assert {k: retry["summary"].get(k, 0) for k in ("failed", "error", "passed")} == {
        "failed": 2,
        "error": 1,
        "passed": 0,
    }


def test_a_later_run_starts_from_the_last_list_and_runs_the_tests_as_they_are_now(two_workers: Stack) -> None:
    """A run of a case whose last sharded run had the same spec is planned from that run's list
    (no serial collection first); its shards collect the tests as they are now, and the first one
    fits the plan before any test is taken: a removed test is not run, an added one is, once."""
    stack = two_workers
    workspace = add_workspace(stack, "shop", FILES)
    case_id = pytest_case(stack, "shop", ["tests"])
    first = stack.wait_final(submit_sharded(stack, case_id, 2), timeout=120)
    assert first["status"] == "FAILED" and "listed_by" not in first["shard_plan"]

    (workspace / "tests/test_more.py").write_text(
        "import pytest\n\ndef test_one():\n    pass\n\ndef test_skipped_inside():\n    pytest.skip('no')\n"
    )
    (workspace / "tests/test_new.py").write_text(
        "def test_added():\n    pass\n\ndef test_added_failing():\n    assert 1 == 2\n"
    )
    second = stack.wait_final(submit_sharded(stack, case_id, 2), timeout=120)
    plan = second["shard_plan"]
    assert plan["listed_by"] == first["id"] and plan["confirmed"] is True, plan
    assert (plan["added"], plan["gone"], plan["tests"]) == (2, 1, 15)
    ran = Counter(step["name"] for step in steps_of(stack, second["id"]))
    assert len(ran) == 15 and set(ran.values()) == {1}
    assert "tests/test_more.py::test_two" not in ran and "tests/test_new.py::test_added_failing" in ran
    expected = pytest_counts(workspace)
    assert expected == {"passed": 9, "failed": 3, "skipped": 2, "error": 1}
    assert {k: second["summary"].get(k, 0) for k in expected} == expected and second["summary"]["total"] == 15

    # A file that no longer parses: every shard's pytest stops at collection, as pytest does, and
    # the error is recorded once (by shard 1), not once per shard.
    (workspace / "tests/test_broken.py").write_text("def test_broken(:\n    pass\n")
    third = stack.wait_final(submit_sharded(stack, case_id, 2), timeout=120)
    assert third["shard_plan"]["listed_by"] == second["id"]
    assert third["status"] == "ERROR", third
    assert [step["name"] for step in steps_of(stack, third["id"])] == ["tests/test_broken.py"]
    assert pytest_counts(workspace) == {"error": 1}
    assert third["summary"]["error"] == 1 and third["summary"]["total"] == 1


def test_a_shard_that_finishes_early_steals_unstarted_tests(two_workers: Stack) -> None:
    """No history: every test is planned at the same time, and the plan alternates them between
    the shards, so shard 1 gets all six slow tests. Shard 2 runs its quick ones, then takes slow
    ones shard 1 has not started: both end with slow tests, and every test runs once. (Shard 1
    holds at most two at a time, the one running and the next: shard 2 may start seconds later on
    a loaded machine and still find some.)"""
    stack = two_workers
    body = ""
    for i in range(6):
        body += f"def test_{2 * i}_slow():\n    import time; time.sleep(2)\n\n"
        body += f"def test_{2 * i + 1}_quick():\n    pass\n\n"
    add_workspace(stack, "mixed", {"tests/test_mixed.py": body})
    case_id = pytest_case(stack, "mixed", ["tests"])
    parent_id = submit_sharded(stack, case_id, 2)
    parent = stack.wait_final(parent_id, timeout=120)
    assert parent["status"] == "PASSED", parent["error"]
    planned = {p["index"]: p["tests"] for p in parent["shard_plan"]["shards"]}
    assert planned == {1: 6, 2: 6} and parent["shard_plan"]["work_stealing"]

    ran: dict[int, list[str]] = {}
    for shard in children(stack, parent_id):
        ran[shard["selection"]["shard"]["index"]] = [s["name"] for s in steps_of(stack, shard["id"])]
    assert sorted(n for names in ran.values() for n in names) == sorted(
        f"tests/test_mixed.py::test_{i}_{'slow' if i % 2 == 0 else 'quick'}" for i in range(12)
    )
    slow = {index: sum(name.endswith("_slow") for name in names) for index, names in ran.items()}
    assert slow[1] >= 1 and slow[2] >= 1, ran  # without stealing: {1: 6, 2: 0}
    assert parent["summary"]["shards"]["imbalance"] < 1.9

    # The next run is planned from the history: three slow tests for each shard from the start.
    again = submit_sharded(stack, case_id, 2)
    assert stack.wait_final(again, timeout=120)["status"] == "PASSED"
    planned_slow = stack.sql(
        "SELECT shard, count(*) FROM shard_tests WHERE parent_execution_id = :p AND key LIKE '%_slow' "
        "GROUP BY shard ORDER BY shard",
        p=uuid.UUID(again),
    )
    assert [tuple(row) for row in planned_slow] == [(1, 3), (2, 3)]


def test_a_sharded_bdd_case_splits_by_scenario(two_workers: Stack) -> None:
    stack = two_workers
    feature = "Feature: Numbers\n" + "".join(
        f"  Scenario: number {i}\n    Given the number {i}\n    Then it is {'odd' if i % 2 else 'even'}\n\n"
        for i in range(6)
    )
    steps = """
        from behave import given, then

        @given("the number {n:d}")
        def number(context, n):
            context.n = n

        @then("it is {parity}")
        def parity(context, parity):
            assert (context.n % 2 == 1) == (parity == "odd")
    """
    case = bdd_case(stack, "numbers", feature, steps)
    junit = stack.root / "bdd.xml"
    # As a user runs it: the CLI follows every shard's steps under the run, and writes one report.
    ran = anvil("submit", "case", case["name"], "--shards", "2", "--junit", str(junit), **_at(stack))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "shard 1/2" in ran.stdout and "shard 2/2" in ran.stdout and "the number 5" in ran.stdout
    assert junit.read_text().count("<testcase ") == 6
    parent_id = re.search(r"execution (\S+)", ran.stdout).group(1)  # type: ignore[union-attr]
    parent = stack.wait_final(parent_id, timeout=120)
    assert parent["status"] == "PASSED", parent["error"]
    assert parent["shard_plan"]["count"] == 2 and parent["shard_plan"]["tests"] == 6
    scenarios: Counter[str] = Counter()
    for shard in children(stack, parent_id):
        ran = steps_of(stack, shard["id"])
        # A shard whose worker took it late may find every scenario stolen: it ran none, SKIPPED.
        assert shard["trigger_kind"] == "shard" and shard["status"] == ("PASSED" if ran else "SKIPPED")
        scenarios.update({s["details"]["scenario"] for s in ran})
    assert scenarios == Counter({f"number {i}": 1 for i in range(6)})
    assert parent["summary"]["total"] == 12 and parent["summary"]["passed"] == 12  # two steps each


def test_a_bdd_shard_that_finishes_early_steals_unstarted_scenarios(two_workers: Stack) -> None:
    """No history: the plan alternates the scenarios, so shard 1 gets the ten slow ones. Each
    shard runs behave once per batch it takes (about 3 s of planned time); shard 2 ends its quick
    ones and then takes slow ones shard 1 has not started: each scenario still runs once."""
    stack = two_workers
    feature = "Feature: Pace\n" + "".join(
        f"  Scenario: pace {i}\n    Given a pause of {'1.5' if i % 2 == 0 else '0'} seconds\n\n"
        for i in range(20)
    )
    steps = """
        import time
        from behave import given

        @given("a pause of {seconds:g} seconds")
        def pause(context, seconds):
            time.sleep(seconds)
    """
    parent_id = submit_sharded(stack, bdd_case(stack, "pace", feature, steps)["id"], 2)
    parent = stack.wait_final(parent_id, timeout=120)
    assert parent["status"] == "PASSED", parent["error"]
    assert parent["shard_plan"]["work_stealing"] is True and parent["summary"]["total"] == 20

    ran: dict[int, set[str]] = {}
    for shard in children(stack, parent_id):
        assert shard["status"] == "PASSED", shard["error"]
        ran[shard["selection"]["shard"]["index"]] = {
            s["details"]["scenario"] for s in steps_of(stack, shard["id"])
        }
        # What a shard ran is its part now: a retry of it would run exactly those scenarios.
        assert len(shard["selection"]["tests"]) == len(ran[shard["selection"]["shard"]["index"]])
    assert not ran[1] & ran[2] and len(ran[1] | ran[2]) == 20
    slow = {f"pace {i}" for i in range(0, 20, 2)}
    assert ran[2] & slow, f"shard 2 took none of shard 1's slow scenarios: {sorted(ran[2])}"


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


def test_a_shard_whose_worker_dies_reruns_only_its_unfinished_tests(two_workers: Stack) -> None:
    """kill -9 the worker running a shard after some of its tests finished: the lease sweep
    re-queues the shard, the next attempt keeps the finished steps (not run again) and runs the
    rest, and every test of the case has exactly one result."""
    stack = two_workers
    body = "".join(f"def test_{i}():\n    import time; time.sleep(1.5)\n\n" for i in range(8))
    add_workspace(stack, "sleepy", {"tests/test_sleepy.py": body})
    case_id = pytest_case(stack, "sleepy", ["tests"])
    parent_id = submit_sharded(stack, case_id, 2)

    victim: dict[str, Any] | None = None
    for _ in range(600):
        for shard in children(stack, parent_id):
            if shard["status"] == "RUNNING" and len(steps_of(stack, shard["id"])) >= 2:
                victim = shard
                break
        if victim is not None:
            break
        time.sleep(0.1)
    assert victim is not None, "no shard got two tests done"
    before = {s["name"]: s["started_at"] for s in steps_of(stack, victim["id"])}
    worker_index = int(victim["worker"].split("@")[0].removeprefix("e2e"))
    stack.kill_worker(stack.workers[worker_index - 1])

    parent = stack.wait_final(parent_id, timeout=120)
    assert parent["status"] == "PASSED", parent["error"]
    recovered = stack.get(victim["id"], include="steps")
    assert recovered["attempt"] >= 2 and recovered["status"] == "PASSED"
    after = {s["name"]: s["started_at"] for s in recovered["steps"] if s["attempt"] == recovered["attempt"]}
    # What finished before the kill was kept as it was, not run again.
    assert all(after[name] == started for name, started in before.items())
    ran: Counter[str] = Counter()
    for shard in children(stack, parent_id):
        latest = stack.get(shard["id"], include="steps")
        ran.update(s["name"] for s in latest["steps"] if s["attempt"] == latest["attempt"])
    assert ran == Counter({f"tests/test_sleepy.py::test_{i}": 1 for i in range(8)})
    assert parent["summary"]["total"] == 8 and parent["summary"]["passed"] == 8


def test_a_failure_stops_every_shard_of_a_run_that_stops_at_its_first_failure(two_workers: Stack) -> None:
    stack = two_workers
    body = "def test_0_fails():\n    assert False\n\n" + "".join(
        f"def test_{i}_slow():\n    import time; time.sleep(20)\n\n" for i in range(1, 4)
    )
    add_workspace(stack, "stopper", {"tests/test_stop.py": body})
    case_id = pytest_case(stack, "stopper", ["tests", "-x"])
    parent_id = submit_sharded(stack, case_id, 2)
    parent = stack.wait_final(parent_id, timeout=60)  # well before the slow tests could end
    assert parent["status"] == "FAILED"
    statuses = sorted(stack.wait_final(s["id"])["status"] for s in children(stack, parent_id))
    assert statuses == ["CANCELLED", "FAILED"]


def test_a_sharded_case_in_a_suite(two_workers: Stack) -> None:
    """A nightly suite whose pytest member splits itself: the member finishes from its shards,
    and the suite from its members."""
    stack = two_workers
    add_workspace(stack, "shop", FILES)
    response = stack.client.post(
        "/api/v1/test-cases",
        json={"name": f"sharded-{uuid.uuid4().hex[:6]}", "kind": "pytest", "timeout_s": 120,
              "spec": {"workspace": "shop", "args": ["tests"], "shards": 2}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    generic = stack.create_case([{"name": "ok", "run": ["true"]}])
    suite = stack.client.post(
        "/api/v1/test-suites",
        json={"name": f"nightly-{uuid.uuid4().hex[:6]}", "case_ids": [response.json()["id"], generic["id"]]},
    ).json()
    run = stack.client.post("/api/v1/executions/suite", json={"test_suite_id": suite["id"]}).json()
    finished = stack.wait_final(run["id"], timeout=120)
    assert finished["status"] == "FAILED" and finished["progress"] == {
        "total": 2, "done": 2, "by_status": {"FAILED": 1, "PASSED": 1},
    }  # fmt: skip
    member = next(m for m in children(stack, run["id"]) if m["test_case_id"] == response.json()["id"])
    assert member["status"] == "FAILED" and member["shard_plan"]["count"] == 2
    assert member["summary"]["total"] == 14 and len(children(stack, member["id"])) == 2
    junit = stack.client.get(f"/api/v1/executions/{run['id']}/junit.xml").text
    assert junit.count("<testcase ") == 15  # the sharded member's 14 tests, and the generic case


def test_a_worker_killed_while_planning_leaves_no_half_plan(two_workers: Stack) -> None:
    """The plan and its shards are one transaction: a worker killed while it collects leaves the
    parent to the lease sweep, and the next attempt plans it once."""
    stack = two_workers
    slow_collection = "import time\ntime.sleep(4)\n"  # every collection (the plan's too) takes 4 s
    tests = "".join(f"def test_{i}():\n    pass\n\n" for i in range(6))
    add_workspace(stack, "slowplan", {"tests/conftest.py": slow_collection, "tests/test_six.py": tests})
    case_id = pytest_case(stack, "slowplan", ["tests"])
    parent_id = submit_sharded(stack, case_id, 2)
    planning = stack.wait_status(parent_id, {"RUNNING"})
    assert children(stack, parent_id) == []
    worker_index = int(planning["worker"].split("@")[0].removeprefix("e2e"))
    stack.kill_worker(stack.workers[worker_index - 1])

    parent = stack.wait_final(parent_id, timeout=120)
    assert parent["status"] == "PASSED", parent["error"]
    assert parent["attempt"] == 2 and parent["shard_plan"]["count"] == 2
    shards = children(stack, parent_id)
    assert len(shards) == 2
    ran = Counter(s["name"] for s in steps_of(stack, parent_id))
    assert ran == Counter({f"tests/test_six.py::test_{i}": 1 for i in range(6)})
