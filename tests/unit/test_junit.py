"""api/junit.py as a pure function: node ids, pytest's phase rules, scenarios, and the XML itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from junitparser import JUnitXml

from api.junit import cases_of, junit_xml, mangle_node_id
from db.models import Execution, StepTrace

START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def execution(
    kind: str = "pytest", status: str = "FAILED", spec: dict[str, Any] | None = None, **kw: Any
) -> Execution:
    if spec is None:
        spec = {"workspace": "w", "args": []} if kind == "pytest" else {}
    return Execution(
        id=uuid.uuid4(),
        test_case_id=uuid.uuid4(),
        case_snapshot={"name": "the case", "kind": kind, "spec": spec},
        status=status,
        attempt=1,
        started_at=START,
        finished_at=START + timedelta(seconds=2),
        worker="w1@host",
        error=kw.pop("error", None),
        created_at=START,
    )


def step(seq: int, name: str, status: str, **kw: Any) -> StepTrace:
    return StepTrace(seq=seq, name=name, status=status, attempt=1, details=kw.pop("details", {}), **kw)


def results(cases: list[Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(c.name, [(r.tag, r.message) for r in c.results]) for c in cases]


@pytest.mark.parametrize(
    ("nodeid", "classname", "name"),
    [
        ("tests/test_x.py::TestA::test_b[1]", "tests.test_x.TestA", "test_b[1]"),
        ("test_x.py::test_a", "test_x", "test_a"),
        ("tests/test_x.py::test_p[a::b/c.py]", "tests.test_x", "test_p[a::b/c.py]"),
        (
            "tests/sub/test_y.py::TestOuter::TestInner::test_z",
            "tests.sub.test_y.TestOuter.TestInner",
            "test_z",
        ),
        ("tests/test_broken.py", "", "tests.test_broken"),  # a collection error
    ],
)
def test_node_ids_become_classname_and_name_as_in_pytests_junitxml(
    nodeid: str, classname: str, name: str
) -> None:
    assert mangle_node_id(nodeid) == (classname, name)


def pytest_item(
    name: str, status: str, phases: dict[str, str], error: str | None = None, **details: Any
) -> StepTrace:
    return step(
        1,
        f"t.py::{name}",
        status,
        error=error,
        duration_s=0.5,
        details={"kind": "test", "phases": phases, **details},
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            pytest_item("ok", "passed", {"setup": "passed", "call": "passed", "teardown": "passed"}),
            [("ok", [])],
        ),
        (
            pytest_item("xp", "xpassed", {"setup": "passed", "call": "xpassed", "teardown": "passed"}),
            [("xp", [])],
        ),
        (
            pytest_item(
                "strict", "failed", {"call": "failed"}, "[XPASS(strict)] why", message="[XPASS(strict)] why"
            ),
            [("strict", [("failure", "[XPASS(strict)] why")])],
        ),
        (
            pytest_item(
                "xf", "xfailed", {"setup": "passed", "call": "xfailed"}, xfail_reason="reason: bug 7"
            ),
            [("xf", [("skipped", "bug 7")])],
        ),
        (
            pytest_item("sk", "skipped", {"setup": "skipped", "teardown": "passed"}, "Skipped: not here"),
            [("sk", [("skipped", "not here")])],
        ),
        (
            pytest_item(
                "both",
                "error",
                {"setup": "error", "teardown": "error"},
                "----- setup -----\nE   OSError: no disk\n\n----- teardown -----\nE   ValueError: late",
                message="setup: OSError: no disk",
            ),
            # Setup and teardown both failed: one testcase with two errors, as pytest writes it.
            [
                (
                    "both",
                    [
                        ("error", 'failed on setup with "OSError: no disk"'),
                        ("error", 'failed on teardown with "ValueError: late"'),
                    ],
                )
            ],
        ),
        (
            pytest_item(
                "twice",
                "error",
                {"setup": "passed", "call": "failed", "teardown": "error"},
                "----- call -----\nE   assert 1 == 2\n\n----- teardown -----\nE   RuntimeError: mess",
                message="assert 1 == 2",
            ),
            # A failing call and a failing teardown: pytest writes two testcases.
            [
                ("twice", [("failure", "assert 1 == 2")]),
                ("twice", [("error", 'failed on teardown with "RuntimeError: mess"')]),
            ],
        ),
        (
            step(1, "t.py::slow", "timeout", error="test timeout after 5s"),
            [("slow", [("error", "test timeout after 5s")])],
        ),
        (
            step(1, "t.py", "error", error="SyntaxError", details={"kind": "collection"}),
            [("t", [("error", "collection failure")])],
        ),
    ],
)
def test_pytest_items_follow_pytests_junitxml_rules(item: StepTrace, expected: list[Any]) -> None:
    # (The execution PASSED here, so no testcase is added for its own result.)
    assert results(cases_of(execution(status="PASSED"), [item])) == expected


def scenario_step(seq: int, scenario: str, status: str, error: str | None = None) -> StepTrace:
    details = {
        "feature": "Shop",
        "scenario": scenario,
        "scenario_location": f"features/shop.feature:{len(scenario)}",
    }
    return step(seq, f"step {seq}", status, keyword="Given", error=error, duration_s=0.25, details=details)


def test_scenarios_group_their_steps_and_take_behaves_verdicts() -> None:
    steps = [
        scenario_step(1, "buys", "passed"),
        scenario_step(2, "buys", "passed"),
        scenario_step(3, "pays", "failed", "Assertion Failed: total is 0"),
        scenario_step(4, "pays", "skipped"),
        scenario_step(5, "refunds", "undefined", "undefined step: Given a refund"),
        scenario_step(6, "ships", "skipped"),
    ]

    cases = cases_of(execution("bdd", error="2 of 4 scenarios failed"), steps)

    assert [(c.classname, c.name, c.time) for c in cases] == [
        ("shop.Shop", "buys", 0.5),
        ("shop.Shop", "pays", 0.5),
        ("shop.Shop", "refunds", 0.25),
        ("shop.Shop", "ships", 0.25),
    ]
    assert results(cases)[1:] == [
        ("pays", [("failure", "Assertion Failed: total is 0")]),
        ("refunds", [("error", "undefined step: Given a refund")]),  # behave: undefined is an error
        ("ships", [("skipped", "scenario not run")]),
    ]


def test_a_failed_run_without_a_failing_testcase_gets_one_for_the_execution() -> None:
    # behave's hook failed before any step ran: every step is skipped, the execution is ERROR.
    steps = [scenario_step(1, "buys", "skipped")]

    cases = cases_of(execution("bdd", "ERROR", error="1 scenario(s) hit an error in a hook"), steps)

    assert results(cases)[-1] == (
        "(execution)",
        [("error", "execution ERROR: 1 scenario(s) hit an error in a hook")],
    )


def test_the_report_is_valid_xml_with_counts_and_escaped_text() -> None:
    run = execution("generic", "FAILED", spec={"workspace": "w", "steps": []}, error="step 2 failed")
    steps = [
        step(1, "a <b> & c", "passed", output="bell\x07 esc\x1b vt\x0b", duration_s=1.5),
        step(2, "fails", "failed", error="exit code 3, expected 0\n" + "x" * 900),
    ]

    raw = junit_xml(name="run \x01", runs=[(run, steps)])
    xml = JUnitXml.fromstring(raw)
    (suite,) = list(xml)

    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert (xml.name, xml.tests, xml.failures, xml.errors, xml.skipped) == ("run #x01", 2, 1, 0, 0)
    assert (suite.timestamp, suite.hostname, float(suite.time)) == ("2030-01-02T03:04:05", "w1@host", 2.0)
    first, second = list(suite)
    assert (first.name, first.system_out, float(first.time)) == ("a <b> & c", "bell#x07 esc#x1B vt#x0B", 1.5)
    assert second.result[0].message == "exit code 3, expected 0"
    assert second.result[0].text.endswith("x" * 900)
