"""Which tests a finished attempt ran and how each went (anvil/domain/results.py), by table."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.domain import results
from anvil.domain.results import StepView, TestOutcome, outcomes_of

PYTEST = {"name": "unit", "kind": "pytest", "spec": {"workspace": "w", "args": []}}
BDD = {"name": "login", "kind": "bdd", "spec": {"workspace": "w", "feature": "features/login.feature"}}
GENERIC = {"name": "smoke", "kind": "generic", "spec": {"workspace": "w", "steps": []}}


def bdd_step(scenario: str, status: str, duration: float = 1.0, **where: Any) -> StepView:
    return StepView("a step", status, duration, {"feature": "Login", "scenario": scenario, **where})


@pytest.mark.parametrize(
    ("step_status", "expected"),
    [
        ("passed", ("passed", None)),
        ("failed", ("failed", None)),
        ("error", ("error", None)),
        ("skipped", ("skipped", None)),
        ("xfailed", ("skipped", "xfailed")),
        ("xpassed", ("passed", "xpassed")),
        ("timeout", ("error", "timeout")),
    ],
)
def test_pytest_statuses_are_normalised_with_the_detail_kept(
    step_status: str, expected: tuple[str, Any]
) -> None:
    (outcome,) = outcomes_of(
        PYTEST, [StepView("t.py::a[x-1]", step_status, 0.2, {"kind": "test"})], execution_status="FAILED"
    )
    assert (outcome.key, outcome.file, (outcome.status, outcome.detail)) == ("t.py::a[x-1]", "t.py", expected)


def test_a_pytest_collection_error_is_an_error_of_its_module_and_cancelled_items_are_no_result() -> None:
    steps = [
        StepView("tests/broken.py", "error", None, {"kind": "collection"}),
        StepView("tests/t.py::slow", "cancelled", 3.0, {"kind": "test"}),
    ]
    assert outcomes_of(PYTEST, steps, execution_status="CANCELLED") == [
        TestOutcome("tests/broken.py", "tests/broken.py", "tests/broken.py", "error", "collection", None)
    ]


def test_a_bdd_scenario_is_one_test_with_its_worst_step_and_summed_duration() -> None:
    steps = [
        bdd_step("Good login", "passed"),
        bdd_step("Good login", "passed"),
        bdd_step("Bad login", "passed"),
        bdd_step("Bad login", "failed"),
        bdd_step("Bad login", "skipped"),
        bdd_step("Not run", "skipped"),
        bdd_step("Row -- @1.1 Users", "passed", outline="Row", example={"id": "1.1"}),
        bdd_step("Row -- @1.2 Users", "undefined", outline="Row", example={"id": "1.2"}),
    ]
    outcomes = {
        o.key: (o.name, o.status, o.detail, o.duration_s)
        for o in outcomes_of(BDD, steps, execution_status="FAILED")
    }
    assert outcomes == {
        "features/login.feature::Good login": ("Login: Good login", "passed", None, 2.0),
        "features/login.feature::Bad login": ("Login: Bad login", "failed", None, 3.0),
        "features/login.feature::Not run": ("Login: Not run", "skipped", None, 1.0),
        "features/login.feature::Row [1.1]": ("Login: Row -- @1.1 Users", "passed", None, 1.0),
        "features/login.feature::Row [1.2]": ("Login: Row -- @1.2 Users", "failed", "undefined", 1.0),
    }
    assert results.test_key(BDD, steps[6]) == "features/login.feature::Row [1.1]"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PASSED", "passed"),
        ("FAILED", "failed"),
        ("ERROR", "error"),
        ("TIMEOUT", "error"),
        ("CANCELLED", None),
    ],
)
def test_a_generic_case_is_one_test_named_after_the_case(status: str, expected: str | None) -> None:
    outcomes = outcomes_of(
        GENERIC, [StepView("step 1", "failed")], execution_status=status, execution_duration_s=4.0
    )
    assert [(o.key, o.status, o.duration_s) for o in outcomes] == (
        [("smoke", expected, 4.0)] if expected else []
    )
