"""Quality gate rules: what each measures, that quarantined tests do not count, that a test counts
with its last attempt, new failures against the previous run, and how pass rates round."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from anvil.domain.gates import GateRules, ResultRow, evaluate, failing_tests


def row(test: str, status: str, *, quarantined: bool = False, retry: int = 0, order: int = 0) -> ResultRow:
    return ResultRow(test, f"tests/test_a.py::{test}", status, quarantined, retry, order)


def results(passed: int, failed: int = 0, errors: int = 0, skipped: int = 0) -> list[ResultRow]:
    rows = [row(f"p{i}", "passed") for i in range(passed)]
    rows += [row(f"f{i}", "failed") for i in range(failed)]
    rows += [row(f"e{i}", "error") for i in range(errors)]
    return rows + [row(f"s{i}", "skipped") for i in range(skipped)]


def judge(rules: dict[str, Any], rows: list[ResultRow], **kw: Any) -> dict[str, Any]:
    kw.setdefault("duration_s", 10.0)
    kw.setdefault("previous_failing", None)
    return evaluate(GateRules.model_validate(rules).as_dict(), rows, **kw)


def failed_rules(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule"]: f for f in verdict["failed_rules"]}


@pytest.mark.parametrize(
    ("rules", "rows", "failed", "measured", "limit"),
    [
        ({"max_failures": 0}, results(5), None, None, None),
        ({"max_failures": 0}, results(5, failed=1), "max_failures", 1, 0),
        ({"max_failures": 2}, results(5, failed=1, errors=1), None, None, None),
        ({"max_failures": 2}, results(5, failed=2, errors=1), "max_failures", 3, 2),
        ({"min_tests": 5}, results(5), None, None, None),
        ({"min_tests": 5}, results(4, skipped=3), "min_tests", 4, 5),  # skipped tests did not run
        ({"min_pass_rate": 90}, results(9, failed=1), None, None, None),
        ({"min_pass_rate": 90}, results(8, failed=1, errors=1), "min_pass_rate", 80.0, 90),
        ({"min_pass_rate": 100}, results(3, skipped=10), None, None, None),  # skips are not failures
        ({"min_pass_rate": 50}, results(0, skipped=2), "min_pass_rate", None, 50),  # nothing ran
    ],
)
def test_each_rule_fails_with_its_measured_value_and_limit(
    rules: dict[str, Any], rows: list[ResultRow], failed: str | None, measured: Any, limit: Any
) -> None:
    verdict = judge(rules, rows)
    if failed is None:
        assert verdict["status"] == "passed" and verdict["failed_rules"] == []
    else:
        assert verdict["status"] == "failed"
        assert list(failed_rules(verdict)) == [failed]
        assert failed_rules(verdict)[failed]["measured"] == measured
        assert failed_rules(verdict)[failed]["limit"] == limit


def test_max_duration_compares_the_runs_seconds() -> None:
    assert judge({"max_duration_s": 60}, results(1), duration_s=59.9)["status"] == "passed"
    verdict = judge({"max_duration_s": 60}, results(1), duration_s=75.25)
    assert failed_rules(verdict)["max_duration_s"]["measured"] == 75.25
    assert "75.2s" in failed_rules(verdict)["max_duration_s"]["message"]


def test_quarantined_tests_do_not_count() -> None:
    rows = [*results(3), row("q1", "failed", quarantined=True), row("q2", "error", quarantined=True)]
    verdict = judge({"max_failures": 0, "min_pass_rate": 100, "min_tests": 3, "no_new_failures": True}, rows)
    assert verdict["status"] == "passed"
    assert verdict["measured"]["tests"] == 3 and verdict["measured"]["quarantined"] == 2
    # Without the quarantine the same results fail every rule but min_tests.
    loud = [*results(3), row("q1", "failed"), row("q2", "error")]
    failed = judge({"max_failures": 0, "min_pass_rate": 100, "min_tests": 3, "no_new_failures": True}, loud)
    assert set(failed_rules(failed)) == {"max_failures", "min_pass_rate", "no_new_failures"}


def test_a_test_counts_once_with_its_last_attempt() -> None:
    rows = [row("t1", "failed", retry=0, order=1), row("t1", "passed", retry=1, order=2), row("t2", "passed")]
    verdict = judge({"max_failures": 0}, rows)
    assert verdict["status"] == "passed"
    assert verdict["measured"]["tests"] == 2 and verdict["measured"]["passed"] == 2
    again = [row("t1", "passed", retry=0, order=1), row("t1", "error", retry=1, order=2)]
    assert judge({"max_failures": 0}, again)["measured"]["errors"] == 1


def test_no_new_failures_compares_with_the_previous_runs_failures() -> None:
    previous = [row("old", "failed"), row("fixed", "failed"), row("ok", "passed"), row("flaky", "failed")]
    before = failing_tests([*previous, row("flaky", "passed", retry=1)])
    assert before == {"old", "fixed"}  # the flaky one passed on its retry
    now = [row("old", "failed"), row("fixed", "passed"), row("ok", "error"), row("brand_new", "failed")]
    verdict = judge({"no_new_failures": True}, now, previous_failing=before, previous_execution_id="e-1")
    assert verdict["status"] == "failed"
    assert failed_rules(verdict)["no_new_failures"]["measured"] == 2
    assert verdict["measured"]["new_failing_tests"] == ["tests/test_a.py::brand_new", "tests/test_a.py::ok"]
    assert verdict["measured"]["compared_with"] == "e-1"
    # Still failing is not new.
    still = judge({"no_new_failures": True}, [row("old", "failed")], previous_failing=before)
    assert still["status"] == "passed"


def test_with_no_previous_run_every_failure_is_new() -> None:
    verdict = judge({"no_new_failures": True}, results(2, failed=1), previous_failing=None)
    assert failed_rules(verdict)["no_new_failures"]["measured"] == 1
    assert "no previous run" in failed_rules(verdict)["no_new_failures"]["message"]
    assert verdict["measured"]["compared_with"] is None


@pytest.mark.parametrize(
    ("passed", "failed", "limit", "status", "shown"),
    [
        (19_999, 1, 100, "failed", 99.99),  # 99.995 % is not 100 %, and is never shown as 100
        (1999, 1, 99.95, "passed", 99.95),  # exactly at the limit passes
        (1998, 2, 99.95, "failed", 99.9),
        (2, 1, 66.67, "failed", 66.66),  # 66.666… % is below 66.67 and shown rounded down
        (2, 1, 66.66, "passed", 66.66),
        (1, 0, 100, "passed", 100.0),
    ],
)
def test_pass_rates_compare_exactly_and_show_rounded_down(
    passed: int, failed: int, limit: float, status: str, shown: float
) -> None:
    verdict = judge({"min_pass_rate": limit}, results(passed, failed=failed))
    assert verdict["status"] == status
    assert verdict["measured"]["pass_rate"] == shown


def test_the_verdict_keeps_only_the_rules_checked() -> None:
    verdict = judge({"max_failures": 0, "no_new_failures": False}, results(1))
    assert verdict["rules"] == {"max_failures": 0}
    assert "new_failures" not in verdict["measured"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "max_failures"),
        ({"no_new_failures": False}, "max_failures"),
        ({"max_failures": -1}, "max_failures"),
        ({"max_failures": "3"}, "max_failures"),
        ({"min_pass_rate": 101}, "min_pass_rate"),
        ({"min_pass_rate": True}, "min_pass_rate"),
        ({"max_duration_s": 0}, "max_duration_s"),
        ({"min_tests": 0}, "min_tests"),
        ({"no_new_failures": "yes"}, "no_new_failures"),
        ({"max_failure": 1}, "max_failure"),
    ],
)
def test_bad_gates_are_refused_at_the_field(body: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GateRules.model_validate(body)
    assert caught.value.errors()[0]["loc"][0] == where
