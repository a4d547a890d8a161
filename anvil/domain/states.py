"""The execution state machine: statuses, the allowed-transition table, the terminal set.

db/transitions.py holds the one function that writes ``status``; it consults this table.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    RETRYING = "RETRYING"
    ABORTED = "ABORTED"


S = Status

ALLOWED: dict[Status, frozenset[Status]] = {
    S.PENDING: frozenset({S.QUEUED, S.SCHEDULED, S.CANCELLED, S.SKIPPED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.SKIPPED}),
    # RUNNING -> QUEUED: the lease was lost and the execution is dispatched again.
    S.RUNNING: frozenset(
        {S.PASSED, S.FAILED, S.ERROR, S.TIMEOUT, S.CANCELLED, S.PAUSED, S.SKIPPED, S.ABORTED, S.QUEUED}
    ),
    S.PAUSED: frozenset({S.RUNNING, S.PASSED, S.FAILED, S.CANCELLED, S.TIMEOUT}),
    # A retry was scheduled as a child execution.
    S.FAILED: frozenset({S.RETRYING}),
    S.ERROR: frozenset({S.RETRYING}),
    S.TIMEOUT: frozenset({S.RETRYING}),
    S.PASSED: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELLED: frozenset(),
    S.RETRYING: frozenset(),
    S.ABORTED: frozenset(),
}

# Nothing can follow these.
TERMINAL: frozenset[Status] = frozenset({S.PASSED, S.SKIPPED, S.CANCELLED, S.RETRYING, S.ABORTED})
# Terminal unless a retry is scheduled.
RETRYABLE: frozenset[Status] = frozenset({S.FAILED, S.ERROR, S.TIMEOUT})
# The execution has finished running (its result is known).
FINISHED: frozenset[Status] = TERMINAL | RETRYABLE
# Still waiting or running.
ACTIVE: frozenset[Status] = frozenset(Status) - FINISHED


def can_transition(src: Status, dst: Status) -> bool:
    return dst in ALLOWED[src]


def sources_of(dst: Status) -> frozenset[Status]:
    """Every status from which ``dst`` may be reached."""
    return frozenset(src for src, dsts in ALLOWED.items() if dst in dsts)


def is_valid_path(statuses: list[Status]) -> bool:
    """True when each consecutive pair in the list is an allowed transition."""
    return all(can_transition(a, b) for a, b in zip(statuses, statuses[1:], strict=False))
