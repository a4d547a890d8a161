"""Quarantine of tests: set or lift it, with an audit row in the same transaction; what is under it.

The state lives on the ``tests`` row (quarantined_at/_by, reason, expires_at); every change appends
a ``test_quarantine_events`` row (quarantined, released, expired) in the caller's transaction. A
quarantine whose expiry passed no longer holds, whether or not the scheduler's ``expire_due`` has
cleared it yet (db/test_results.quarantined, ``quarantined_keys``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from anvil.errors import Conflict
from db.history import get_test
from db.models import Execution, Test, TestQuarantineEvent
from db.test_results import quarantined
from db.webhook_events import quarantine_changed

QUARANTINED, RELEASED, EXPIRED = "quarantined", "released", "expired"
SYSTEM = "system"
CLEARED = {
    "quarantined_at": None,
    "quarantined_by": None,
    "quarantine_reason": None,
    "quarantine_expires_at": None,
}


def is_quarantined(test: Test, *, now: datetime) -> bool:
    return quarantined(test.quarantined_at, test.quarantine_expires_at, now)


def quarantine(
    session: Session,
    test_id: uuid.UUID,
    *,
    reason: str,
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> tuple[Test, bool]:
    """Quarantine the test, or update the reason and expiry of its quarantine; (test, newly).

    A quarantine that had expired but was not cleared yet is recorded as expired first.
    """
    test = get_test(session, test_id, lock=True)
    newly = not is_quarantined(test, now=now)
    if newly and test.quarantined_at is not None:
        _event(session, test.id, EXPIRED, actor=SYSTEM, at=now, expires_at=test.quarantine_expires_at)
    test.quarantined_at = now if newly else test.quarantined_at
    test.quarantined_by = actor
    test.quarantine_reason = reason
    test.quarantine_expires_at = expires_at
    _event(session, test.id, QUARANTINED, actor=actor, at=now, reason=reason, expires_at=expires_at)
    session.flush()
    action = QUARANTINED if newly else "updated"
    quarantine_changed(session, [test.id], action, actor=actor, reason=reason, expires_at=expires_at)
    return test, newly


def release(
    session: Session, test_id: uuid.UUID, *, actor: str, now: datetime, reason: str | None = None
) -> Test:
    """Lift the test's quarantine; 409 when it is not under one (never, lifted, or expired)."""
    test = get_test(session, test_id, lock=True)
    if not is_quarantined(test, now=now):
        expired = test.quarantine_expires_at if test.quarantined_at is not None else None
        why = f" (its quarantine expired at {expired.isoformat()})" if expired else ""
        raise Conflict(f"test {test_id} is not quarantined{why}", field="id")
    for column, value in CLEARED.items():
        setattr(test, column, value)
    _event(session, test.id, RELEASED, actor=actor, at=now, reason=reason)
    session.flush()
    quarantine_changed(session, [test.id], RELEASED, actor=actor, reason=reason)
    return test


def events(
    session: Session, test_id: uuid.UUID, *, limit: int, before: int | None = None
) -> list[TestQuarantineEvent]:
    """The test's quarantine audit, newest first (``before``: only events older than that id)."""
    stmt = select(TestQuarantineEvent).where(TestQuarantineEvent.test_id == test_id)
    if before is not None:
        stmt = stmt.where(TestQuarantineEvent.id < before)
    return list(session.scalars(stmt.order_by(TestQuarantineEvent.id.desc()).limit(limit)))


def quarantined_ids(session: Session, test_ids: list[uuid.UUID], *, now: datetime) -> set[uuid.UUID]:
    """Which of ``test_ids`` are under quarantine at ``now``."""
    if not test_ids:
        return set()
    rows = session.execute(
        select(Test.id, Test.quarantined_at, Test.quarantine_expires_at).where(
            Test.id.in_(test_ids), Test.quarantined_at.is_not(None)
        )
    ).all()
    return {ident for ident, since, until in rows if quarantined(since, until, now)}


def quarantined_keys(session: Session, case_id: uuid.UUID, *, now: datetime) -> frozenset[str]:
    """The keys of the case's tests under quarantine at ``now``."""
    return _keys(session, Test.test_case_id == case_id, now)


def quarantined_keys_of_execution(
    session: Session, execution_id: uuid.UUID, *, now: datetime
) -> frozenset[str]:
    """``quarantined_keys`` of the execution's case (none for a suite's own execution)."""
    case_id = select(Execution.test_case_id).where(Execution.id == execution_id).scalar_subquery()
    return _keys(session, Test.test_case_id == case_id, now)


def _keys(session: Session, where: Any, now: datetime) -> frozenset[str]:
    return frozenset(
        session.scalars(
            select(Test.key).where(
                where,
                Test.quarantined_at.is_not(None),
                or_(Test.quarantine_expires_at.is_(None), Test.quarantine_expires_at > now),
            )
        )
    )


def expire_due(session: Session, *, now: datetime, limit: int) -> int:
    """Clear up to ``limit`` quarantines whose expiry passed, each with an 'expired' event by
    'system'; returns how many. SKIP LOCKED: a test someone is changing now waits for the next run."""
    due: Sequence[Any] = session.execute(
        select(Test.id, Test.quarantine_expires_at)
        .where(Test.quarantined_at.is_not(None), Test.quarantine_expires_at <= now)
        .order_by(Test.quarantine_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    session.execute(update(Test).where(Test.id.in_([row.id for row in due])).values(**CLEARED))
    session.execute(
        insert(TestQuarantineEvent),
        [
            {
                "test_id": row.id,
                "action": EXPIRED,
                "actor": SYSTEM,
                "at": now,
                "expires_at": row.quarantine_expires_at,
            }
            for row in due
        ],
    )
    quarantine_changed(session, [row.id for row in due], EXPIRED, actor=SYSTEM)
    return len(due)


def _event(
    session: Session,
    test_id: uuid.UUID,
    action: str,
    *,
    actor: str,
    at: datetime,
    reason: str | None = None,
    expires_at: datetime | None = None,
) -> None:
    session.add(
        TestQuarantineEvent(
            test_id=test_id, action=action, reason=reason, expires_at=expires_at, actor=actor, at=at
        )
    )
