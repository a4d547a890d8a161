"""A suite of mixed kinds — generic commands, a pytest run, behave features — through two real
workers: the suite's result and progress aggregate its members, and its JUnit export holds one
testsuite per member whose counts match that member's recorded steps."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from junitparser import JUnitXml

from tests.e2e.conftest import Stack, StackFactory
from tests.e2e.test_suites import create_suite, members, run_suite

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOT_RUN = ("skipped", "not_run", "cancelled")
BDD_ERRORS = ("error", "undefined", "pending", "timeout")


def example_case(stack: Stack, file: str) -> dict[str, Any]:
    response = stack.client.post(
        "/api/v1/test-cases", json=json.loads((EXAMPLES / "cases" / file).read_text())
    )
    assert response.status_code == 201, response.text
    return response.json()


def expected_counts(case: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """(tests, failures, errors, skipped) a member's steps stand for in JUnit terms."""
    if case["kind"] == "bdd":  # one testcase per scenario; an undefined step makes it an error
        scenarios: dict[tuple[Any, ...], list[str]] = {}
        for step in steps:
            d = step["details"]
            key = (d.get("feature"), d.get("rule"), d.get("scenario"), d.get("scenario_location"))
            scenarios.setdefault(key, []).append(step["status"])
        errors = sum(any(s in BDD_ERRORS for s in group) for group in scenarios.values())
        failures = sum(
            "failed" in group and not any(s in BDD_ERRORS for s in group) for group in scenarios.values()
        )
        skipped = sum(all(s in NOT_RUN for s in group) for group in scenarios.values())
        return len(scenarios), failures, errors, skipped
    # A generic step or a pytest item: one testcase each (these pytest items all pass).
    statuses = Counter(step["status"] for step in steps)
    return (
        len(steps),
        statuses["failed"],
        statuses["error"] + statuses["timeout"],
        sum(statuses[s] for s in NOT_RUN),
    )


def test_a_suite_of_generic_pytest_and_bdd_cases_aggregates_correctly(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, concurrency=2)
    for workspace in ("pytest-demo", "bdd-demo"):
        shutil.copytree(EXAMPLES / "workspaces" / workspace, stack.root / "workspaces" / workspace)
    generic = stack.create_case(
        [
            {"name": "greet", "run": ["echo", "hello"], "expect_output": "hello"},
            {"name": "ok", "run": ["true"]},
        ],
        name="generic-ok",
    )
    pytest_smoke = example_case(stack, "pytest-demo-smoke.json")
    bdd_smoke = example_case(stack, "bdd-demo-smoke.json")
    bdd_full = example_case(stack, "bdd-demo.json")
    broken = stack.create_case(
        [
            {"name": "fine", "run": ["true"]},
            {"name": "breaks", "run": ["sh", "-c", "echo boom; exit 3"]},
            {"name": "never", "run": ["true"]},
        ],
        name="generic-broken",
    )
    cases = {c["id"]: c for c in (generic, pytest_smoke, bdd_smoke, bdd_full, broken)}

    # Every member passes: the suite PASSED, all done, each member PASSED with its own kind's steps.
    passed = run_suite(stack, create_suite(stack, [generic, pytest_smoke, bdd_smoke]))
    assert passed["status"] == "PASSED", passed
    assert passed["progress"] == {"total": 3, "done": 3, "by_status": {"PASSED": 3}}
    kids = members(stack, passed["id"])
    assert sorted((k["test_case_name"], k["kind"], k["status"]) for k in kids) == [
        ("bdd-demo-smoke", "bdd", "PASSED"),
        ("generic-ok", "generic", "PASSED"),
        ("pytest-demo-smoke", "pytest", "PASSED"),
    ]
    for kid in kids:
        steps = stack.get(kid["id"], include="steps")["steps"]
        statuses = {s["status"] for s in steps}
        # behave reports the scenarios a tag expression left out as skipped steps.
        assert "passed" in statuses and statuses <= {"passed", "skipped"}, (kid["test_case_name"], steps)

    # Two members fail (a BDD feature and a command): the suite FAILED, counted by status.
    failed = run_suite(stack, create_suite(stack, [generic, pytest_smoke, bdd_full, broken]))
    assert failed["status"] == "FAILED", failed
    assert failed["progress"] == {"total": 4, "done": 4, "by_status": {"FAILED": 2, "PASSED": 2}}
    assert failed["error"] == "2 of 4 members passed or skipped"
    kids = members(stack, failed["id"])
    assert {k["test_case_name"]: k["status"] for k in kids} == {
        "generic-ok": "PASSED",
        "pytest-demo-smoke": "PASSED",
        "bdd-demo": "FAILED",
        "generic-broken": "FAILED",
    }

    response = stack.client.get(f"/api/v1/executions/{failed['id']}/junit.xml")
    assert response.status_code == 200, response.text
    report = JUnitXml.fromstring(response.content)
    suites = {s.name: s for s in report}
    assert len(list(report)) == 4 and set(suites) == {k["test_case_name"] for k in kids}
    for kid in kids:
        steps = stack.get(kid["id"], include="steps")["steps"]
        suite = suites[kid["test_case_name"]]
        counts = (suite.tests, suite.failures, suite.errors, suite.skipped)
        assert counts == expected_counts(cases[kid["test_case_id"]], steps), (kid["test_case_name"], counts)
    # Known facts of the examples: bdd-demo has 8 scenarios, one failing and one with an undefined step.
    bdd = suites["bdd-demo"]
    assert (bdd.tests, bdd.failures, bdd.errors) == (8, 1, 1)
    assert (suites["generic-broken"].tests, suites["generic-broken"].failures) == (3, 1)
    totals = [
        sum(getattr(s, key) for s in suites.values()) for key in ("tests", "failures", "errors", "skipped")
    ]
    assert [report.tests, report.failures, report.errors, report.skipped] == totals  # as exported
