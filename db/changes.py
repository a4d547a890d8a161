"""What a transaction changed that its commit must react to, noted in ``session.info``.

transition() notes each status change here; db/reactions.py reads the notes just before the
commit (retries to schedule, suites to settle). A neutral module, so the writer of statuses and
the reactions to them do not import each other.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from anvil.domain.states import RETRYABLE, Status

_RETRY = "anvil_retry_candidates"
_SUITES = "anvil_dirty_suites"
_RESULTS = "anvil_results_due"
_ENDED = "anvil_ended"  # reached a final status (not RETRYING): the execution.finished webhook
# An execution reaching one of these has its per-test results recorded (db/test_results.py).
# Not RETRYING (the FAILED it follows recorded them), SKIPPED or ABORTED (nothing ran to a result).
RESULT_BEARING = frozenset({Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.CANCELLED})


def note_change(
    session: Session, execution_id: uuid.UUID, root_id: uuid.UUID, to: Status, *, finished: bool
) -> None:
    if to in RETRYABLE:
        session.info.setdefault(_RETRY, []).append(execution_id)
    if to in RESULT_BEARING:
        session.info.setdefault(_RESULTS, []).append(execution_id)
    if finished and to is not Status.RETRYING:
        session.info.setdefault(_ENDED, []).append(execution_id)
    if root_id != execution_id:
        dirty = session.info.setdefault(_SUITES, {})
        dirty[root_id] = dirty.get(root_id, False) or finished


def forget_suite(session: Session, root_id: uuid.UUID) -> None:
    session.info.get(_SUITES, {}).pop(root_id, None)


def take_retry_candidates(session: Session) -> list[uuid.UUID]:
    return session.info.pop(_RETRY, [])


def take_dirty_suites(session: Session) -> dict[uuid.UUID, bool]:
    """Roots whose members changed, each with whether a member finished."""
    return session.info.pop(_SUITES, {})


def take_results_due(session: Session) -> list[uuid.UUID]:
    """Executions that reached a result in this transaction, for their per-test results."""
    return session.info.pop(_RESULTS, [])


def take_ended(session: Session) -> list[uuid.UUID]:
    """Executions that reached a final status in this transaction (their status may have moved on
    since: a FAILED one with retries left is RETRYING by the time the reactions read it)."""
    return session.info.pop(_ENDED, [])


def pending(session: Session) -> bool:
    return any(session.info.get(key) for key in NOTE_KEYS)


# The session.info keys above: a rollback drops them, back to a savepoint restores them (db/session.py).
NOTE_KEYS = (_RETRY, _SUITES, _RESULTS, _ENDED)
