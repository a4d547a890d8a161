"""Quarantine's decision, as tables: which outcomes it masks, what the summary says, which steps it
marks, and the status a masked execution's tests are recorded with."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.cli.http import ApiError
from anvil.cli.tests import expiry_body
from anvil.domain.quarantine import (
    Masking,
    QuarantineWatch,
    apply_quarantine,
    masked_outcome,
    recorded_status,
)
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord

F, P, E, T, C = Status.FAILED, Status.PASSED, Status.ERROR, Status.TIMEOUT, Status.CANCELLED


@pytest.mark.parametrize(
    ("status", "failing", "quarantined", "expected", "hidden"),
    [
        # every failing test quarantined: FAILED -> PASSED
        (F, ["a"], {"a"}, P, ("a",)),
        (F, ["b", "a"], {"a", "b", "c"}, P, ("a", "b")),
        (F, ["a", "a"], {"a"}, P, ("a",)),  # one test failing in two steps (BDD) counts once
        # a failing test not quarantined: stays FAILED, the quarantined failures are still reported
        (F, ["a", "b"], {"a"}, F, ("a",)),
        (F, ["b"], {"a"}, F, ()),
        (F, [None], {"a"}, F, ()),  # a failing step of no test always counts
        (F, ["a", None], {"a"}, F, ("a",)),
        # FAILED with no failing step recorded (nothing to excuse it): stays FAILED
        (F, [], {"a"}, F, ()),
        # the harness's failures are never masked
        (E, ["a"], {"a"}, E, ("a",)),
        (T, ["a"], {"a"}, T, ("a",)),
        (C, [], {"a"}, C, ()),
        # nothing quarantined, or nothing failed
        (F, ["a"], set(), F, ()),
        (P, [], {"a"}, P, ()),
    ],
)
def test_apply_quarantine(
    status: Status,
    failing: list[str | None],
    quarantined: set[str],
    expected: Status,
    hidden: tuple[str, ...],
) -> None:
    masking = apply_quarantine(status, failing, quarantined)
    assert masking == Masking(expected, hidden)
    assert masking.masked is (expected is P and status is not P)


def test_a_masked_outcome_passes_and_says_why() -> None:
    outcome = Outcome(F, {"total": 3, "failed": 1, "passed": 2}, "pytest: 1 failed, 2 passed")
    masked = masked_outcome(outcome, Masking(P, ("t.py::a",)))
    assert masked.status is P and masked.error is None
    assert masked.summary == {
        "total": 3,
        "failed": 1,
        "passed": 2,
        "quarantined_failures": 1,
        "quarantined": ["t.py::a"],
        "quarantine_note": "PASSED: the only failures were of 1 quarantined test "
        "(pytest: 1 failed, 2 passed)",
        "unmasked_status": "FAILED",
    }


def test_an_outcome_still_failed_reports_its_quarantined_failures() -> None:
    outcome = Outcome(F, {"total": 3}, "pytest: 2 failed")
    kept = masked_outcome(outcome, Masking(F, ("a", "b")))
    assert (kept.status, kept.error) == (F, "pytest: 2 failed")
    assert kept.summary["quarantined_failures"] == 2
    assert kept.summary["quarantine_note"] == "2 quarantined tests also failed; they do not count"
    assert "unmasked_status" not in kept.summary


def test_no_quarantined_failure_leaves_the_outcome_alone() -> None:
    outcome = Outcome(F, {"total": 1}, "x")
    assert masked_outcome(outcome, Masking(F, ())) is outcome


@pytest.mark.parametrize(
    ("status", "summary", "recorded"),
    [
        ("PASSED", {"unmasked_status": "FAILED"}, "FAILED"),
        ("PASSED", {"total": 1}, "PASSED"),
        ("PASSED", None, "PASSED"),
        ("FAILED", {"unmasked_status": "FAILED"}, "FAILED"),
        ("ERROR", {}, "ERROR"),
    ],
)
def test_recorded_status(status: str, summary: dict[str, Any] | None, recorded: str) -> None:
    assert recorded_status(status, summary) == recorded


def step(seq: int, name: str, status: str, **details: Any) -> StepRecord:
    return StepRecord(seq=seq, name=name, status=status, details=details)


def test_the_watch_marks_steps_of_quarantined_pytest_tests_and_masks_their_failure() -> None:
    watch = QuarantineWatch({"kind": "pytest", "name": "c"}, {"t.py::flaky", "t.py::other"})
    seen = [
        watch.see(step(1, "t.py::ok", "passed")),
        watch.see(step(2, "t.py::flaky", "failed")),
        watch.see(step(3, "t.py::other", "xfailed")),
    ]
    assert [s.details.get("quarantined", False) for s in seen] == [False, True, True]
    decided = watch.decide(Outcome(F, {"total": 3}, "pytest: 1 failed"))
    assert decided.status is P
    assert decided.summary["quarantined_failures"] == 1
    assert decided.summary["quarantined"] == ["t.py::flaky"]


@pytest.mark.parametrize("status", ["failed", "error", "undefined", "pending", "timeout", "blocked"])
def test_every_failing_step_status_counts(status: str) -> None:
    watch = QuarantineWatch({"kind": "pytest"}, {"q"})
    watch.see(step(1, "q", "passed"))
    watch.see(step(2, "other", status))
    assert watch.decide(Outcome(F, {}, None)).status is F


def test_a_bdd_scenario_is_one_test_whatever_its_steps() -> None:
    snapshot = {"kind": "bdd", "spec": {"feature": "features/pay.feature"}}
    watch = QuarantineWatch(snapshot, {"features/pay.feature::Refund"})
    marked = watch.see(step(1, "Given a refund", "failed", scenario="Refund", feature="Pay"))
    watch.see(step(2, "Then it is paid", "skipped", scenario="Refund", feature="Pay"))
    other = watch.see(step(3, "Given a card", "passed", scenario="Card", feature="Pay"))
    assert marked.details["quarantined"] is True and "quarantined" not in other.details
    assert watch.decide(Outcome(F, {}, "1 of 2 scenarios failed")).status is P


def test_a_generic_case_is_its_one_test() -> None:
    watch = QuarantineWatch({"kind": "generic", "name": "smoke"}, {"smoke"})
    assert watch.see(step(1, "curl", "failed")).details == {"quarantined": True}
    watch.see(step(2, "next", "skipped"))
    decided = watch.decide(Outcome(F, {"total": 2}, "step 1 (curl) failed: exit code 1"))
    assert (decided.status, decided.summary["quarantined_failures"]) == (P, 1)


def test_without_quarantined_tests_the_watch_changes_nothing() -> None:
    watch = QuarantineWatch({"kind": "pytest"}, frozenset())
    record = step(1, "a", "failed")
    assert watch.see(record) is record
    outcome = Outcome(F, {}, None)
    assert watch.decide(outcome) is outcome


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("7d", {"expires_in_days": 7.0}),
        ("12h", {"expires_in_days": 0.5}),
        ("2w", {"expires_in_days": 14.0}),
        ("1.5d", {"expires_in_days": 1.5}),
        ("2030-01-02", {"expires_at": "2030-01-02T00:00:00"}),
        ("2030-01-02T10:00:00+02:00", {"expires_at": "2030-01-02T10:00:00+02:00"}),
    ],
)
def test_cli_expiry(text: str, body: dict[str, Any]) -> None:
    assert expiry_body(text) == body


def test_cli_expiry_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ApiError, match="7d"):
        expiry_body("next week")
