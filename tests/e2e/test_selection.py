"""Selective execution end to end: real API, worker and beat, and the CLI as a user runs it.

A pytest case runs whole once (one test fails); `anvil execute --rule failed-in-last:1` then runs
only that test — the steps recorded name only its node id — and a suite with a file map runs only
the tests a changed source file maps to. An observation runs everything and reports afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import Stack
from tests.e2e.test_cli import _at, anvil
from tests.e2e.test_pytest_runner import add_workspace, pytest_case, steps_of

FILES = {
    "tests/payments/test_pay.py": """
        def test_charge():
            assert 1 + 1 == 2

        def test_refund():
            assert "refunded" == "pending"
    """,
    "tests/shop/test_cart.py": """
        def test_add():
            assert [1] + [2] == [1, 2]

        def test_remove():
            assert [1, 2][:1] == [1]
    """,
}
REFUND, ADD, REMOVE = (
    "tests/payments/test_pay.py::test_refund",
    "tests/shop/test_cart.py::test_add",
    "tests/shop/test_cart.py::test_remove",
)


def latest(stack: Stack, **filters: str) -> dict[str, Any]:
    page = stack.client.get("/api/v1/executions", params={**filters, "limit": 1}).json()
    return dict(page["items"][0])


def test_run_only_what_the_rules_select(stack: Stack) -> None:
    add_workspace(stack, "shop", FILES)
    case_id = pytest_case(stack, "shop", ["tests", "-q"])
    name = stack.client.get(f"/api/v1/test-cases/{case_id}").json()["name"]
    first = stack.submit(case_id)
    assert stack.wait_final(first["id"])["status"] == "FAILED"
    assert len(steps_of(stack, first["id"])) == 4

    shown = anvil("execute", "--case", name, "--rule", "failed-in-last:1", "--dry-run", **_at(stack))
    assert shown.returncode == 0, shown.stderr
    assert "1 of 4 known tests selected" in shown.stdout and "failed in 1 of its last 1 runs" in shown.stdout

    ran = anvil("execute", "--case", name, "--rule", "failed-in-last:1", "--wait", **_at(stack))
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the one selected test still fails
    execution = latest(stack, test_case_id=case_id)
    assert execution["id"] != first["id"] and execution["selection"]["tests"] == [REFUND]
    assert [(s["name"], s["status"]) for s in steps_of(stack, execution["id"])] == [(REFUND, "failed")]
    assert execution["revision"], "the CLI fills the revision from git (the tests run in a repository)"

    # A suite whose file map sends the shop's sources to the shop's tests: a changed source file
    # of the shop runs those tests only.
    shop_map = {"src/shop/**": ["tests/shop"]}
    suite = stack.client.post(
        "/api/v1/test-suites",
        json={"name": f"nightly-{uuid.uuid4().hex[:6]}", "case_ids": [case_id], "file_map": shop_map},
    ).json()
    ran = anvil(
        "execute", "--suite", suite["name"], "--changed-file", "src/shop/cart.py", "--wait", **_at(stack)
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    root = latest(stack, test_suite_id=suite["id"], trigger_kind="api")
    assert root["status"] == "PASSED" and root["selection"]["counts"]["selected"] == 2
    member = latest(stack, parent_execution_id=root["id"])
    assert sorted(s["name"] for s in steps_of(stack, member["id"])) == [ADD, REMOVE]

    # Observation: everything runs; afterwards, what failed-in-last:1 would have caught and saved.
    observed = anvil(
        "execute", "--case", name, "--rule", "failed-in-last:1", "--observe", "--wait", **_at(stack)
    )
    assert observed.returncode == 1, observed.stdout + observed.stderr
    execution = latest(stack, test_case_id=case_id, trigger_kind="api")
    assert len(steps_of(stack, execution["id"])) == 4
    report = stack.client.get(f"/api/v1/executions/{execution['id']}/selection").json()
    assert report["finished"] and report["observe"]
    assert {k: report["report"][k] for k in ("tests", "selected", "failures", "caught", "missed")} == {
        "tests": 4,
        "selected": 1,
        "failures": 1,
        "caught": 1,
        "missed": 0,
    }
    assert 0 < report["report"]["time_saved_s"] < report["report"]["time_total_s"]

    listed = anvil("rules", "list", **_at(stack))
    assert (
        listed.returncode == 0 and "failed-in-last:<N>" in listed.stdout and "changed-files" in listed.stdout
    )
