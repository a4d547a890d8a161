"""What the scheduler tick looks for: due, expired, lost and stale executions; the leader lease."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from db.models import Execution, SchedulerLease

BATCH = 500


def take_lease(session: Session, *, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
    """Hold (or renew) the named lease until now + ttl; False while another holder's is valid."""
    from datetime import timedelta

    until = now + timedelta(seconds=ttl_s)
    won = session.execute(
        update(SchedulerLease)
        .where(
            SchedulerLease.name == name, or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now)
        )
        .values(holder=holder, expires_at=until)
        .returning(SchedulerLease.name)
    ).scalar_one_or_none()
    if won is not None:
        return True
    if session.get(SchedulerLease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.execute(insert(SchedulerLease).values(name=name, holder=holder, expires_at=until))
    except IntegrityError:
        return False  # another beat created it first
    return True


def _locked(session: Session, *where: Any) -> list[Execution]:
    # SKIP LOCKED: rows a worker or another tick is changing right now are left for the next tick.
    return list(
        session.scalars(
            select(Execution)
            .where(*where)
            .order_by(Execution.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    )


def due_scheduled(session: Session, *, now: datetime) -> list[Execution]:
    return _locked(session, Execution.status == Status.SCHEDULED.value, Execution.run_at <= now)


def expired_waiting(session: Session, *, now: datetime) -> list[Execution]:
    # A suite execution stays QUEUED until a member starts: its members expire, not the suite itself.
    return _locked(
        session,
        Execution.status == Status.QUEUED.value,
        Execution.test_case_id.is_not(None),
        Execution.expires_at.is_not(None),
        Execution.expires_at <= now,
    )


def lost_running(session: Session, *, now: datetime) -> list[Execution]:
    return _locked(session, Execution.status == Status.RUNNING.value, Execution.lease_expires_at < now)


def stale_paused(session: Session, *, now: datetime) -> list[Execution]:
    """PAUSED manual executions whose person-deadline (kept in lease_expires_at) passed."""
    return _locked(session, Execution.status == Status.PAUSED.value, Execution.lease_expires_at < now)
