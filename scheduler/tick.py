"""One scheduler tick. Runs inside the beat process (scheduler/beat.py), about once a second.

Several beat processes may run; the one holding the ``tick`` lease acts. Every "is it due"
decision uses the database clock, read once per tick, and the pure functions in anvil/domain/policy.py.
A new duty is a function (session, settings, report) -> what to publish, added to SWEEPS below.
Each sweep commits on its own; publishing happens after the commit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from anvil.domain.policy import missing_from_broker, on_lease_expired, should_republish
from anvil.domain.states import Status
from anvil.settings import Settings, get_settings
from db import quarantine, sweeps
from db.executions import mark_republished, queued_candidates
from db.schedules import fire_due_schedules
from db.session import new_session
from db.sql import read_db_now
from db.transitions import transition
from scheduler.broker_look import vouched_for
from scheduler.retention import RetentionReport, run_retention
from workers.publish import publish_many

log = logging.getLogger("anvil.tick")
HOLDER = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
ACTOR = "scheduler"

Publish = list[tuple[uuid.UUID, str]]


@dataclass
class TickReport:
    leader: bool = False
    promoted: int = 0
    expired: int = 0
    requeued: int = 0
    lost: int = 0
    paused_timeouts: int = 0
    fired: int = 0
    republished: int = 0
    still_waiting: int = 0  # silent, but their message is in the broker: not published again
    quarantines_expired: int = 0
    published: Publish = field(default_factory=list)
    retention: RetentionReport | None = None  # a retention round ran (scheduler/retention.py)


def run_tick(settings: Settings | None = None, *, holder: str = HOLDER) -> TickReport:
    """One tick; ``holder`` names this beat in the lease (one per process; tests run several)."""
    settings = settings or get_settings()
    report = TickReport()
    with new_session() as session, session.begin():
        now = read_db_now(session)
        report.leader = sweeps.take_lease(
            session, name="tick", holder=holder, now=now, ttl_s=max(3 * settings.tick_interval_s, 3.0)
        )
    if not report.leader:
        return report
    for sweep in SWEEPS:
        try:
            with new_session() as session, session.begin():
                to_publish = sweep(session, settings, report)
        except Exception:  # one failing sweep must not stop the others; it is retried next tick
            log.exception("tick sweep %s failed", sweep.__name__)
            continue
        if to_publish:  # after the commit
            publish_many(to_publish)
            report.published += to_publish
    try:  # many short transactions of its own, not one: not in SWEEPS
        report.retention = run_retention(settings, holder=holder)
    except Exception:
        log.exception("retention round failed")
    return report


def _promote(session: Session, settings: Settings, report: TickReport) -> Publish:
    """SCHEDULED executions whose run_at has come (retry backoff passed) -> QUEUED."""
    now, out = read_db_now(session), []
    for ex in sweeps.due_scheduled(session, now=now):
        transition(
            session,
            ex.id,
            Status.QUEUED,
            from_=Status.SCHEDULED,
            actor=ACTOR,
            reason="due",
            values={"published_at": now, "publish_count": 1},
        )
        out.append((ex.id, ex.priority))
    report.promoted = len(out)
    return out


def _expire(session: Session, settings: Settings, report: TickReport) -> Publish:
    now = read_db_now(session)
    for ex in sweeps.expired_waiting(session, now=now):
        values = {"finished_at": now, "error": "expired before it started"}
        transition(
            session, ex.id, Status.SKIPPED, from_=Status.QUEUED, actor=ACTOR, reason="expired", values=values
        )
        report.expired += 1
    return []


def _recover(session: Session, settings: Settings, report: TickReport) -> Publish:
    """RUNNING executions whose worker stopped renewing the lease: run again, time out, or abort."""
    now = read_db_now(session)
    out = []
    for ex in sweeps.lost_running(session, now=now):
        decision = on_lease_expired(
            attempt=ex.attempt,
            max_attempts=ex.max_attempts,
            started_at=ex.started_at,
            timeout_s=float(ex.case_snapshot.get("timeout_s", settings.default_test_timeout_s)),
            grace_s=settings.timeout_grace_s,
            now=now,
            cancel_requested=ex.cancel_requested_at is not None,
        )
        values: dict[str, object] = {"lease_expires_at": None, "worker": None}
        if decision.status is Status.QUEUED:
            values.update(published_at=now, publish_count=1)
            out.append((ex.id, ex.priority))
            report.requeued += 1
        else:
            values.update(finished_at=now, error=decision.reason)
            report.lost += 1
        transition(
            session,
            ex.id,
            decision.status,
            from_=Status.RUNNING,
            attempt=ex.attempt,
            actor=ACTOR,
            reason=decision.reason,
            values=values,
        )
    return out


def _paused(session: Session, settings: Settings, report: TickReport) -> Publish:
    now = read_db_now(session)
    for ex in sweeps.stale_paused(session, now=now):
        reason = f"no tester finished it within {settings.manual_timeout_s:g}s"
        values = {"finished_at": now, "error": reason, "lease_expires_at": None}
        transition(
            session, ex.id, Status.TIMEOUT, from_=Status.PAUSED, actor=ACTOR, reason=reason, values=values
        )
        report.paused_timeouts += 1
    return []


def _schedules(session: Session, settings: Settings, report: TickReport) -> Publish:
    out = fire_due_schedules(session, now=read_db_now(session), actor=ACTOR)
    report.fired = len({ident for ident, _ in out})
    return out


def _republish(session: Session, settings: Settings, report: TickReport) -> Publish:
    """QUEUED executions nobody claimed for a while whose message is no longer in the broker.

    One waiting its turn behind a backlog still has its message in Redis: publishing it again would
    only add copies. Silent ones are checked against a look at the broker (scheduler/broker_look.py
    explains the timing); when Redis cannot be read, they are all published again.
    """
    now = read_db_now(session)
    silent = {
        ex.id: ex.priority
        for ex in queued_candidates(session)
        if should_republish(
            last_published=ex.published_at or ex.queued_at or ex.created_at,
            publish_count=ex.publish_count,
            now=now,
            after_s=settings.republish_after_s,
        )
    }
    if not silent:
        return []
    missing = missing_from_broker(silent, vouched_for(silent, settings), now=time.monotonic())
    report.still_waiting = len(silent) - len(missing)
    due = [(ident, silent[ident]) for ident in mark_republished(session, missing)]
    report.republished = len(due)
    if due:
        log.info("re-publishing %d unclaimed executions missing from the broker", len(due))
    return due


# Expired quarantines stopped holding at their expiry (every reader compares it with now): clearing
# them only tidies the rows and audits it, so once a minute is enough, and a tick costs nothing.
QUARANTINE_SWEEP_S = 60.0
_quarantine_sweep = {"next": 0.0}


def _quarantines(session: Session, settings: Settings, report: TickReport) -> Publish:
    """Quarantines whose expiry passed -> released, with an 'expired' audit row by 'system'."""
    if time.monotonic() < _quarantine_sweep["next"]:
        return []
    report.quarantines_expired = quarantine.expire_due(session, now=read_db_now(session), limit=sweeps.BATCH)
    # A full batch: more are due, take the next batch on the next tick.
    full = report.quarantines_expired == sweeps.BATCH
    _quarantine_sweep["next"] = time.monotonic() + (0.0 if full else QUARANTINE_SWEEP_S)
    return []


SWEEPS: tuple[Callable[[Session, Settings, TickReport], Publish], ...] = (
    _promote,
    _expire,
    _recover,
    _paused,
    _schedules,
    _republish,
    _quarantines,
)
