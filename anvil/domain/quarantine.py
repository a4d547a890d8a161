"""Quarantine: a quarantined test still runs and is recorded, but its failure does not fail its run.

Pure. The worker reads the case's quarantined test keys once, after its claim; ``QuarantineWatch``
marks the steps of those tests as the runner emits them and notes which tests failed; when the
runner returns, ``apply_quarantine`` decides the execution's status. Only a failure of the tests
themselves (FAILED) is masked, and only when every failing test is quarantined; the harness's
ERROR (pytest exit code 2 and above, a sandbox error), TIMEOUT and CANCELLED never are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anvil.domain.results import FAILING, STEP_RESULT, StepView, test_key
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord

# At most this many keys are listed in an execution's summary (the count is always exact).
LISTED = 50


@dataclass(frozen=True)
class Masking:
    """What quarantine makes of an attempt's outcome."""

    status: Status
    # Quarantined tests that failed, sorted: their failures did not count.
    quarantined_failed: tuple[str, ...] = ()

    @property
    def masked(self) -> bool:
        return bool(self.quarantined_failed) and self.status is Status.PASSED


def apply_quarantine(
    outcome_status: Status, failing_keys: Iterable[str | None], quarantined_keys: Collection[str]
) -> Masking:
    """FAILED becomes PASSED when at least one test failed and every failing test is quarantined.

    ``failing_keys``: the test of every failing step (None: a step of no test, which always counts).
    """
    failing = set(failing_keys)
    hidden = tuple(sorted(k for k in failing if k is not None and k in quarantined_keys))
    if outcome_status is Status.FAILED and failing and len(hidden) == len(failing):
        return Masking(Status.PASSED, hidden)
    return Masking(outcome_status, hidden)


def masked_outcome(outcome: Outcome, masking: Masking) -> Outcome:
    """``outcome`` with the quarantine's decision and its report in the summary.

    ``quarantined_failures`` counts the quarantined tests that failed (present when some did);
    ``quarantined`` lists them; ``quarantine_note`` says what it changed; ``unmasked_status`` keeps
    FAILED when the execution passed only because of the quarantine.
    """
    if not masking.quarantined_failed:
        return outcome
    n = len(masking.quarantined_failed)
    tests = f"{n} quarantined test{'s' if n > 1 else ''}"
    summary: dict[str, Any] = {
        **outcome.summary,
        "quarantined_failures": n,
        "quarantined": list(masking.quarantined_failed[:LISTED]),
    }
    if masking.status is not outcome.status:
        was = f" ({outcome.error})" if outcome.error else ""
        summary["quarantine_note"] = f"PASSED: the only failures were of {tests}{was}"
        summary["unmasked_status"] = outcome.status.value
        return Outcome(masking.status, summary, None)
    summary["quarantine_note"] = f"{tests} also failed; they do not count"
    return Outcome(outcome.status, summary, outcome.error)


def recorded_status(status: str, summary: Mapping[str, Any] | None) -> str:
    """The status a finished execution's tests ran to: FAILED for one passed only by quarantine
    (the one test of a generic or manual case failed; its history must say so)."""
    unmasked = (summary or {}).get("unmasked_status")
    return str(unmasked) if status == Status.PASSED.value and unmasked else status


class QuarantineWatch:
    """Follows one attempt's steps: marks those of quarantined tests and notes failing tests.

    With no quarantined test in the case it does nothing (the common case costs nothing).
    """

    def __init__(self, snapshot: Mapping[str, Any], quarantined_keys: Collection[str]) -> None:
        self.snapshot = snapshot
        self.quarantined = frozenset(quarantined_keys)
        self.failing: set[str | None] = set()

    def see(self, step: StepRecord) -> StepRecord:
        """The step to record: marked ``details["quarantined"]`` when its test is quarantined."""
        if not self.quarantined:
            return step
        key = test_key(self.snapshot, StepView(step.name, str(step.status), step.duration_s, step.details))
        result = STEP_RESULT.get(str(step.status))
        if result is not None and result[0] in FAILING:
            self.failing.add(key)
        if key in self.quarantined:
            return dataclasses.replace(step, details={**step.details, "quarantined": True})
        return step

    def decide(self, outcome: Outcome) -> Outcome:
        if not self.quarantined:
            return outcome
        return masked_outcome(outcome, apply_quarantine(outcome.status, self.failing, self.quarantined))
