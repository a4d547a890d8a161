"""Quarantine through a real stack, driven by the `anvil tests` commands as a user runs them: a
pytest case with a test that always fails is quarantined by its key, then runs in a suite that
passes; the failure is still recorded (step marked, test result failed under quarantine)."""

from __future__ import annotations

import json

from tests.e2e.conftest import StackFactory
from tests.e2e.test_cli import anvil, token_of
from tests.e2e.test_pytest_runner import add_workspace, steps_of

BROKEN = "tests/test_checkout.py::test_refund"
TESTS = {
    "tests/test_checkout.py": """
        def test_pay():
            assert 1 + 1 == 2

        def test_refund():
            assert "refunded" == "pending", "the payment provider's sandbox is down"
    """
}


def test_a_quarantined_failing_test_no_longer_fails_its_execution_or_suite(make_stack: StackFactory) -> None:
    stack = make_stack()
    api_url, token = stack.api_url, token_of(stack)
    add_workspace(stack, "shop", TESTS)
    case = stack.client.post(
        "/api/v1/test-cases",
        json={"name": "shop-tests", "kind": "pytest", "spec": {"workspace": "shop", "args": ["tests"]}},
    ).json()

    # The first run fails the usual way; it also makes the tests known by their keys.
    first = stack.wait_final(stack.submit(case["id"])["id"])
    assert first["status"] == "FAILED", first

    done = anvil(
        "tests", "quarantine", BROKEN, "--case", "shop-tests", "--reason", "provider sandbox down",
        "--expires", "7d", api_url=api_url, token=token,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "quarantined" in done.stdout and "provider sandbox down" in done.stdout

    suite = stack.client.post(
        "/api/v1/test-suites", json={"name": "nightly", "case_ids": [case["id"]]}
    ).json()
    submitted = stack.client.post("/api/v1/executions/suite", json={"test_suite_id": suite["id"]}).json()
    finished = stack.wait_final(submitted["id"])
    assert finished["status"] == "PASSED", finished

    (member,) = stack.client.get(
        "/api/v1/executions", params={"parent_execution_id": submitted["id"]}
    ).json()["items"]
    member = stack.get(member["id"])
    assert member["status"] == "PASSED" and member["error"] is None
    assert member["summary"]["quarantined_failures"] == 1
    assert member["summary"]["quarantined"] == [BROKEN]
    steps = {s["name"]: s for s in steps_of(stack, member["id"])}
    assert steps[BROKEN]["status"] == "failed" and steps[BROKEN]["details"]["quarantined"] is True
    assert "quarantined" not in steps["tests/test_checkout.py::test_pay"]["details"]
    (result,) = stack.sql(
        "SELECT r.status, r.quarantined FROM test_results r JOIN tests t ON t.id = r.test_id "
        "WHERE r.execution_id = :e AND t.key = :k",
        e=member["id"],
        k=BROKEN,
    )
    assert tuple(result) == ("failed", True)

    listed = anvil("tests", "quarantined", "--json", api_url=api_url, token=token)
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert (shown["key"], shown["quarantine_reason"]) == (BROKEN, "provider sandbox down")

    released = anvil(
        "tests", "release", shown["id"], "--reason", "provider is back", api_url=api_url, token=token
    )
    assert released.returncode == 0, released.stdout + released.stderr
    audit = anvil("tests", "audit", BROKEN, "--case", "shop-tests", "--json", api_url=api_url, token=token)
    assert audit.returncode == 0, audit.stderr
    assert [(e["action"], e["actor"], e["reason"]) for e in json.loads(audit.stdout)] == [
        ("released", "e2e-admin", "provider is back"),
        ("quarantined", "e2e-admin", "provider sandbox down"),
    ]
