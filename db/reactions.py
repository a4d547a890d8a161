"""What follows a status change, inside the same transaction, just before it commits.

transition() notes each change in ``session.info``; this ``before_commit`` hook then
1. schedules retries for attempts that ended FAILED/ERROR/TIMEOUT with retries left, and
2. settles the suites whose members changed (db/suite_runs.settle),
so a result, its retry and its suite's new state are committed together or not at all.
"""

from __future__ import annotations

import uuid

from sqlalchemy import event
from sqlalchemy.orm import Session

from anvil.domain.states import RETRYABLE, Status

_RETRY = "anvil_retry_candidates"
_SUITES = "anvil_dirty_suites"


def note_change(
    session: Session, execution_id: uuid.UUID, root_id: uuid.UUID, to: Status, *, finished: bool
) -> None:
    if to in RETRYABLE:
        session.info.setdefault(_RETRY, []).append(execution_id)
    if root_id != execution_id:
        dirty = session.info.setdefault(_SUITES, {})
        dirty[root_id] = dirty.get(root_id, False) or finished


def forget_suite(session: Session, root_id: uuid.UUID) -> None:
    session.info.get(_SUITES, {}).pop(root_id, None)


@event.listens_for(Session, "before_commit")
def _react(session: Session) -> None:
    from db.retries import schedule_retry
    from db.suite_runs import settle

    while session.info.get(_RETRY) or session.info.get(_SUITES):
        for execution_id in session.info.pop(_RETRY, []):
            schedule_retry(session, execution_id, actor="retry-policy")
        roots = session.info.pop(_SUITES, {})
        for root_id in sorted(roots):  # a fixed lock order between transactions
            settle(session, root_id, members_finished=roots[root_id])


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_RETRY, None)
    session.info.pop(_SUITES, None)
