"""Retries: a FAILED/ERROR/TIMEOUT attempt with retries left becomes RETRYING, and a new child
execution (trigger_kind ``retry``) waits SCHEDULED until its backoff has passed.

Runs as a reaction in the same transaction as the status change (db/reactions.py), so a result
and its retry are committed together: nobody ever sees a failure that will still be retried as final.
"""

from __future__ import annotations

import random
import uuid

from sqlalchemy.orm import Session

from db.enums import Priority, TriggerKind
from db.executions import create_execution
from db.models import Execution
from db.session import db_now
from db.states import RETRYABLE, Status
from db.transitions import transition
from scheduler.policy import backoff_s, resolve_retry_policy, should_retry


def schedule_retry(
    session: Session, execution_id: uuid.UUID, *, actor: str, repair: bool = False, force: bool = False
) -> Execution | None:
    """Retry ``execution_id`` if its policy allows (or ``force``, for a person's request).

    Returns the new SCHEDULED child, or None when no retry is due.
    """
    failed = session.get(Execution, execution_id, populate_existing=True)
    if failed is None or failed.test_case_id is None or Status(failed.status) not in RETRYABLE:
        return None
    policy = resolve_retry_policy(failed.retry_policy)
    if not force and not should_retry(policy, status=Status(failed.status), retry_index=failed.retry_index):
        return None
    delay = 0.0 if force else backoff_s(policy, retry_index=failed.retry_index, rand=random.random())
    number = failed.retry_index + 1
    kind = TriggerKind.REPAIR if repair else TriggerKind.RETRY
    reason = (
        f"{kind.value} {number}" + (f" of {policy.max_retries}" if not force else "") + f" in {delay:.1f}s"
    )
    transition(session, failed.id, Status.RETRYING, actor=actor, reason=reason)
    return create_execution(
        session,
        test_case_id=failed.test_case_id,
        snapshot=failed.case_snapshot,
        test_suite_id=failed.test_suite_id,
        priority=Priority(failed.priority),
        trigger_kind=kind,
        requested_by=failed.requested_by,
        actor=actor,
        run_id=failed.run_id,
        params=failed.params,
        parent_execution_id=failed.id,
        correlation_id=failed.correlation_id,
        root_execution_id=failed.root_execution_id,
        max_attempts=failed.max_attempts,
        status=Status.SCHEDULED,
        run_at=db_now(session, delay),
        retry_policy=failed.retry_policy,
        retry_index=number,
        reason=f"{kind.value} of {failed.id}",
    )
