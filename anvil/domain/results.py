"""Tests and their results: what a team recognises from run to run, and how each run went.

A *test* is a pytest node id (parametrized ids included), a BDD scenario (feature file + scenario,
+ the example row of an outline), or a whole generic or manual case. ``outcomes_of`` turns the
steps of a finished attempt into one outcome per test, with the status normalised to passed /
failed / error / skipped (xfailed, xpassed, timeout and the like kept as ``detail``). Pure: the
caller passes the steps in (db/test_results.py stores what this returns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anvil.domain.states import Status

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
RESULT_STATUSES = (PASSED, FAILED, ERROR, SKIPPED)
FAILING = frozenset({FAILED, ERROR})

# A step's status -> (the test's status, the detail kept). Missing: the step says nothing about the
# test's result (cancelled: it was stopped, not run to an end).
STEP_RESULT: dict[str, tuple[str, str | None]] = {
    "passed": (PASSED, None),
    "failed": (FAILED, None),
    "error": (ERROR, None),
    "skipped": (SKIPPED, None),
    "xfailed": (SKIPPED, "xfailed"),
    "xpassed": (PASSED, "xpassed"),
    "timeout": (ERROR, "timeout"),
    "undefined": (FAILED, "undefined"),
    "pending": (FAILED, "pending"),
    "blocked": (FAILED, "blocked"),
    "not_run": (SKIPPED, "not_run"),
}
# An execution's status -> the status of its one test (generic and manual cases).
EXECUTION_RESULT: dict[str, tuple[str, str | None]] = {
    Status.PASSED.value: (PASSED, None),
    Status.FAILED.value: (FAILED, None),
    Status.ERROR.value: (ERROR, None),
    Status.TIMEOUT.value: (ERROR, "timeout"),
}
# The worse of two statuses wins when a test has several steps (a BDD scenario).
SEVERITY = {SKIPPED: 0, PASSED: 1, FAILED: 2, ERROR: 3}
SINGLE_TEST_KINDS = frozenset({"generic", "manual"})
# Marks the snapshot of an execution imported from a report run elsewhere (db/imports.py): each
# step is one test, named by the report (a pytest node id, or classname::name), whatever the
# case's kind. A pytest case's imported steps are read like its own runs' (the same node ids).
IMPORTED = "imported"


@dataclass(frozen=True)
class StepView:
    """What ``outcomes_of`` reads of a recorded step."""

    name: str
    status: str
    duration_s: float | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest class
    key: str
    name: str
    file: str | None
    status: str
    detail: str | None = None
    duration_s: float | None = None


def outcomes_of(
    snapshot: Mapping[str, Any],
    steps: Iterable[StepView],
    *,
    execution_status: str,
    execution_duration_s: float | None = None,
) -> list[TestOutcome]:
    """One outcome per test of a finished attempt, in the order the tests first appear."""
    kind = snapshot.get("kind")
    if kind == "pytest":
        return _pytest_outcomes(steps)
    if snapshot.get(IMPORTED):
        return _imported_outcomes(steps)
    if kind == "bdd":
        return _bdd_outcomes(snapshot, steps)
    if kind in SINGLE_TEST_KINDS:
        result = EXECUTION_RESULT.get(execution_status)
        if result is None:  # cancelled, skipped, aborted: the test did not run to a result
            return []
        name = str(snapshot.get("name", "case"))
        return [TestOutcome(name, name, None, result[0], result[1], execution_duration_s)]
    return []


def test_key(snapshot: Mapping[str, Any], step: StepView) -> str | None:
    """The key of the test a step belongs to (None: a step of no test, e.g. pytest's session)."""
    kind = snapshot.get("kind")
    if kind == "pytest" or snapshot.get(IMPORTED):
        return step.name or None
    if kind == "bdd":
        return _scenario(snapshot, step.details or {})[0]
    if kind in SINGLE_TEST_KINDS:
        return str(snapshot.get("name", "case"))
    return None


def _pytest_outcomes(steps: Iterable[StepView]) -> list[TestOutcome]:
    outcomes: dict[str, TestOutcome] = {}
    for step in steps:
        result = STEP_RESULT.get(step.status)
        if result is None or not step.name:
            continue
        details = step.details or {}
        status, detail = result
        if details.get("kind") == "collection":
            status, detail = ERROR, "collection"
        outcomes[step.name] = TestOutcome(
            key=step.name,
            name=step.name,
            file=step.name.split("::", 1)[0] or None,
            status=status,
            detail=detail,
            duration_s=step.duration_s,
        )
    return list(outcomes.values())


def _imported_outcomes(steps: Iterable[StepView]) -> list[TestOutcome]:
    """Steps of an imported report: each its own test, keyed by its name; the file when it had one."""
    outcomes: dict[str, TestOutcome] = {}
    for step in steps:
        result = STEP_RESULT.get(step.status)
        if result is None or not step.name:
            continue
        details = step.details or {}
        status, detail = (ERROR, "collection") if details.get("kind") == "collection" else result
        file = details.get("file")
        outcomes[step.name] = TestOutcome(
            step.name, step.name, str(file) if file else None, status, detail, step.duration_s
        )
    return list(outcomes.values())


def _scenario(snapshot: Mapping[str, Any], details: Mapping[str, Any]) -> tuple[str, str, str]:
    """(key, display name, file) of the scenario a BDD step belongs to."""
    spec = snapshot.get("spec") or {}
    file = str(spec.get("feature") or "feature_text")
    example = details.get("example") or {}
    base = details.get("outline") or details.get("scenario") or "?"
    key = f"{file}::{base}"
    if example.get("id") is not None:
        key += f" [{example['id']}]"
    feature, scenario = details.get("feature"), details.get("scenario") or base
    name = f"{feature}: {scenario}" if feature else str(scenario)
    return key, name, file


def _bdd_outcomes(snapshot: Mapping[str, Any], steps: Iterable[StepView]) -> list[TestOutcome]:
    found: dict[str, dict[str, Any]] = {}
    for step in steps:
        result = STEP_RESULT.get(step.status)
        if result is None:
            continue
        key, name, file = _scenario(snapshot, step.details or {})
        entry = found.setdefault(key, {"name": name, "file": file, "statuses": [], "duration": 0.0})
        entry["statuses"].append(result)
        entry["duration"] += step.duration_s or 0.0
    outcomes = []
    for key, entry in found.items():
        status, detail = _scenario_result(entry["statuses"])
        outcomes.append(
            TestOutcome(key, entry["name"], entry["file"], status, detail, round(entry["duration"], 6))
        )
    return outcomes


def _scenario_result(results: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    """A scenario passed when its steps did; skipped when none ran; else its worst step."""
    ran = [r for r in results if r[0] != SKIPPED]
    if not ran:
        return SKIPPED, None
    return max(ran, key=lambda r: SEVERITY[r[0]])
