"""Quality gates: the rules a finished suite (or sharded case) run must meet, and their verdict.

A gate is a few rules — ``max_failures``, ``min_pass_rate``, ``no_new_failures``,
``max_duration_s``, ``min_tests`` — checked against the run's test results when it finishes
(db/gates.py reads them in the transaction that finishes the run). Each test counts once, with its
last attempt in the run (a test that failed, then passed on a retry, passed). Quarantined tests do
not count at all. Pure: the results, the previous run's failing tests and the duration are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Self

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

from anvil.domain.specs.base import Strict, field_error

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
FAILING = frozenset({FAILED, ERROR})
INT4_MAX = 2**31 - 1
MAX_DURATION_S = 30 * 24 * 3600.0
# The newly failing tests a verdict names (the count is always exact).
NEW_FAILURES_LISTED = 20
GATE_HELP = (
    "quality gate checked when the run finishes: max_failures, min_pass_rate (percent), "
    "no_new_failures (against the previous run on the same branch), max_duration_s, min_tests; "
    "quarantined tests do not count"
)


class GateRules(Strict):
    """A gate: at least one rule; rules left out are not checked."""

    max_failures: StrictInt | None = Field(
        default=None, ge=0, le=INT4_MAX, description="at most this many tests failed or errored"
    )
    min_pass_rate: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=100,
        description="at least this percentage of the tests that ran passed (skipped ones do not count)",
    )
    no_new_failures: StrictBool = Field(
        default=False,
        description="no test fails that did not fail in the previous run of the same suite or case "
        "on the same branch (with no previous run, every failure is new)",
    )
    max_duration_s: StrictFloat | None = Field(
        default=None, gt=0, le=MAX_DURATION_S, description="the run took at most this many seconds"
    )
    min_tests: StrictInt | None = Field(
        default=None, ge=1, le=INT4_MAX, description="at least this many tests ran (not skipped)"
    )

    @model_validator(mode="after")
    def _some_rule(self) -> Self:
        if not self.as_dict():
            raise field_error(
                "GateRules",
                "max_failures",
                "a gate needs at least one rule: max_failures, min_pass_rate, no_new_failures, "
                "max_duration_s or min_tests",
                kind="gate_rule",
            )
        return self

    def as_dict(self) -> dict[str, Any]:
        """The rules as stored: only those that are checked."""
        rules = self.model_dump(mode="json", exclude_none=True)
        if not rules.get("no_new_failures"):
            rules.pop("no_new_failures", None)
        return rules


@dataclass(frozen=True)
class ResultRow:
    """One recorded result of a test in the run: ``order`` breaks ties between attempts."""

    test: Hashable
    name: str
    status: str
    quarantined: bool
    retry_index: int = 0
    order: int = 0


def last_attempts(rows: Iterable[ResultRow]) -> dict[Hashable, ResultRow]:
    """Each test's result from its last attempt in the run (highest retry, then latest recorded)."""
    latest: dict[Hashable, ResultRow] = {}
    for row in rows:
        seen = latest.get(row.test)
        if seen is None or (row.retry_index, row.order) > (seen.retry_index, seen.order):
            latest[row.test] = row
    return latest


def failing_tests(rows: Iterable[ResultRow]) -> set[Hashable]:
    """The tests whose last attempt in a run failed or errored, quarantined or not."""
    return {t for t, row in last_attempts(rows).items() if row.status in FAILING}


@dataclass(frozen=True)
class Measured:
    tests: int  # ran: passed, failed or errored, not quarantined
    passed: int
    failed: int
    errors: int
    skipped: int
    quarantined: int
    pass_rate: Fraction | None  # None when no test ran


def measure(latest: Mapping[Hashable, ResultRow]) -> Measured:
    counted = [row for row in latest.values() if not row.quarantined]
    by = {s: sum(row.status == s for row in counted) for s in (PASSED, FAILED, ERROR, SKIPPED)}
    ran = by[PASSED] + by[FAILED] + by[ERROR]
    return Measured(
        tests=ran,
        passed=by[PASSED],
        failed=by[FAILED],
        errors=by[ERROR],
        skipped=by[SKIPPED],
        quarantined=len(latest) - len(counted),
        pass_rate=Fraction(100 * by[PASSED], ran) if ran else None,
    )


def shown_rate(rate: Fraction) -> float:
    """A pass rate as shown: rounded down to 2 decimals, so 99.999 % never shows as 100."""
    return math.floor(rate * 100) / 100


def evaluate(
    rules: Mapping[str, Any],
    rows: Iterable[ResultRow],
    *,
    duration_s: float | None,
    previous_failing: Collection[Hashable] | None,
    previous_execution_id: str | None = None,
) -> dict[str, Any]:
    """The verdict of ``rules`` (GateRules.as_dict()) on a run's results.

    ``previous_failing``: the tests that failed in the previous run on the branch (None: there was
    none). Returns what executions.gate stores: status, the rules, what was measured, and each failed
    rule with its measured value and limit.
    """
    rules = {k: v for k, v in rules.items() if v is not None and v is not False}  # checked ones only
    latest = last_attempts(rows)
    m = measure(latest)
    failures = m.failed + m.errors
    failed: list[dict[str, Any]] = []

    def fail(rule: str, measured: Any, limit: Any, message: str) -> None:
        failed.append({"rule": rule, "measured": measured, "limit": limit, "message": message})

    if "max_failures" in rules and failures > rules["max_failures"]:
        limit = rules["max_failures"]
        fail("max_failures", failures, limit, f"{failures} tests failed; at most {limit} may fail")
    if "min_pass_rate" in rules:
        limit = rules["min_pass_rate"]
        if m.pass_rate is None:
            fail("min_pass_rate", None, limit, "no test ran, so there is no pass rate")
        elif m.pass_rate < Fraction(str(limit)):
            shown = shown_rate(m.pass_rate)
            fail("min_pass_rate", shown, limit, f"{shown:g}% of the tests passed; at least {limit:g}% must")
    new: list[ResultRow] = []
    if rules.get("no_new_failures"):
        before = set(previous_failing or ())
        new = sorted(
            (r for t, r in latest.items() if r.status in FAILING and not r.quarantined and t not in before),
            key=lambda r: r.name,
        )
        if new:
            names = ", ".join(r.name for r in new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
            against = "the previous run" if previous_failing is not None else "no previous run"
            message = f"{len(new)} tests failing that did not before ({against}): {names}"
            fail("no_new_failures", len(new), 0, message)
    if "max_duration_s" in rules and duration_s is not None and duration_s > rules["max_duration_s"]:
        limit = rules["max_duration_s"]
        message = f"the run took {duration_s:.1f}s; at most {limit:g}s"
        fail("max_duration_s", round(duration_s, 3), limit, message)
    if "min_tests" in rules and m.tests < rules["min_tests"]:
        limit = rules["min_tests"]
        fail("min_tests", m.tests, limit, f"{m.tests} tests ran; at least {limit} must")
    measured: dict[str, Any] = {
        "tests": m.tests,
        "passed": m.passed,
        "failed": m.failed,
        "errors": m.errors,
        "skipped": m.skipped,
        "quarantined": m.quarantined,
        "pass_rate": shown_rate(m.pass_rate) if m.pass_rate is not None else None,
        "duration_s": round(duration_s, 3) if duration_s is not None else None,
    }
    if rules.get("no_new_failures"):
        measured["new_failures"] = len(new)
        measured["new_failing_tests"] = [r.name for r in new[:NEW_FAILURES_LISTED]]
        measured["compared_with"] = previous_execution_id
    return {
        "status": "failed" if failed else "passed",
        "rules": dict(rules),
        "measured": measured,
        "failed_rules": failed,
    }
