"""Cron schedules: CRUD, and firing due slots — exactly one execution per (schedule, slot).

A schedule whose test case or suite is deleted is disabled in the same transaction as the delete,
with a ``disabled_reason`` (``disable_for_deleted_target``); the tick does the same if it ever
finds a due schedule's target gone. It cannot be enabled again while its target is missing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import due_slot, resolve_retry_policy
from anvil.domain.states import ACTIVE, Status
from anvil.errors import Conflict, InvalidInput, NotFound
from anvil.settings import get_settings
from db.cancel import cancel
from db.cases import get_case
from db.executions import NewExecution, case_snapshot, insert_executions
from db.models import Execution, Schedule, TestCase, TestSuite
from db.pagination import page
from db.sql import read_db_now
from db.suite_runs import create_suite_execution
from db.suites import get_suite
from db.types import utcnow

log = logging.getLogger("anvil.schedules")
Publish = list[tuple[uuid.UUID, str]]


def create_schedule(session: Session, *, created_by: uuid.UUID | None, **fields: Any) -> Schedule:
    if session.scalar(select(Schedule.id).where(Schedule.name == fields["name"])) is not None:
        raise Conflict(f"a schedule named {fields['name']!r} already exists", field="body.name")
    schedule = Schedule(id=uuid.uuid4(), created_by=created_by, **fields)
    session.add(schedule)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a schedule named {fields['name']!r} already exists", field="body.name") from exc
    return schedule


def get_schedule(session: Session, schedule_id: uuid.UUID) -> Schedule:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} does not exist", field="id")
    return schedule


def update_schedule(session: Session, schedule: Schedule, changes: dict[str, Any]) -> Schedule:
    if "name" in changes and changes["name"] != schedule.name:
        if session.scalar(select(Schedule.id).where(Schedule.name == changes["name"])) is not None:
            raise Conflict(f"a schedule named {changes['name']!r} already exists", field="body.name")
    if changes.get("enabled") is True:
        targets = ("test_case_id", "test_suite_id")
        missing = missing_target(
            session, **{key: changes.get(key, getattr(schedule, key)) for key in targets}
        )
        if missing is not None:
            raise Conflict(
                f"schedule {schedule.name!r} cannot be enabled: its {missing} was deleted; "
                "point it at another test case or suite (test_case_id or test_suite_id) to enable it",
                field="body.enabled",
                disabled_reason=schedule.disabled_reason,
            )
        changes = {**changes, "disabled_reason": None}
    timing = {"cron", "timezone", "enabled"} & changes.keys()
    for key, value in changes.items():
        setattr(schedule, key, value)
    schedule.updated_at = utcnow()
    if timing:
        # New timing counts from now: slots before the change are not "missed".
        schedule.last_slot_at = None
    session.flush()
    return schedule


def list_schedules(
    session: Session, *, limit: int, cursor: str | None = None
) -> tuple[list[Schedule], str | None]:
    """Newest first, keyset-paginated like every other collection."""
    return page(
        session,
        select(Schedule),
        created_at=Schedule.created_at,
        ident=Schedule.id,
        limit=limit,
        cursor=cursor,
    )


def missing_target(
    session: Session, *, test_case_id: uuid.UUID | None, test_suite_id: uuid.UUID | None
) -> str | None:
    """What the schedule would start, when that was deleted ("test case 'x' (id)"); None when it exists."""
    target: TestCase | TestSuite | None
    ident: uuid.UUID | None
    if test_case_id is not None:
        what, ident, target = "test case", test_case_id, session.get(TestCase, test_case_id)
    else:
        what, ident, target = "test suite", test_suite_id, session.get(TestSuite, test_suite_id)
    if target is not None and target.deleted_at is None:
        return None
    return f"{what} {target.name!r} ({ident})" if target is not None else f"{what} {ident}"


def disable_for_deleted_target(
    session: Session, target: TestCase | TestSuite, *, actor: str
) -> list[Schedule]:
    """Disable every schedule that starts ``target`` (being deleted), saying why; the caller commits
    this with the delete. Returns the schedules disabled."""
    what, column = (
        ("test case", Schedule.test_case_id)
        if isinstance(target, TestCase)
        else ("test suite", Schedule.test_suite_id)
    )
    hit = list(session.scalars(select(Schedule).where(column == target.id).with_for_update()))
    for schedule in hit:
        _disable(schedule, f"its {what} {target.name!r} ({target.id}) was deleted by {actor}")
    session.flush()
    return hit


def _disable(schedule: Schedule, reason: str) -> None:
    schedule.enabled = False
    schedule.disabled_reason = reason
    schedule.updated_at = utcnow()
    log.warning("schedule %r (%s) disabled: %s", schedule.name, schedule.id, reason)


def delete_schedule(session: Session, schedule: Schedule) -> None:
    # Executions it fired keep their history; the link is dropped.
    for execution in session.scalars(select(Execution).where(Execution.schedule_id == schedule.id)):
        execution.schedule_id = None
    session.delete(schedule)
    session.flush()


def active_runs(session: Session, schedule_id: uuid.UUID) -> list[uuid.UUID]:
    """Roots fired by this schedule that still have something waiting or running (retries included)."""
    roots = select(Execution.root_execution_id).where(Execution.schedule_id == schedule_id)
    return list(
        session.scalars(
            select(Execution.root_execution_id)
            .where(Execution.root_execution_id.in_(roots), Execution.status.in_([s.value for s in ACTIVE]))
            .distinct()
        )
    )


def fire_due_schedules(session: Session, *, now: datetime, actor: str) -> Publish:
    out: Publish = []
    schedules = session.scalars(
        select(Schedule).where(Schedule.enabled.is_(True)).with_for_update(skip_locked=True)
    ).all()
    for schedule in schedules:
        try:
            decision = due_slot(
                cron=schedule.cron,
                tz=schedule.timezone,
                last_slot=schedule.last_slot_at,
                since=schedule.updated_at,
                now=now,
            )
        except Exception:  # one broken schedule (e.g. a zone gone from tzdata) must not stop the others
            log.exception("schedule %s (%s) cannot be evaluated", schedule.name, schedule.id)
            continue
        if decision.fire_at is None:
            continue
        schedule.last_slot_at = decision.fire_at
        out += fire(session, schedule, slot_at=decision.fire_at, now=now, actor=actor, explicit=False)
    return out


def fire(
    session: Session, schedule: Schedule, *, slot_at: datetime, now: datetime, actor: str, explicit: bool
) -> Publish:
    """Start the schedule's target for ``slot_at`` under its overlap policy. A slot fires at most once.

    ``now`` is the database clock: the new executions are stamped with it, not with the clock of
    the beat's host, which may be skewed.

    A target that was deleted starts nothing; the tick (not ``explicit``) then disables the schedule.
    """
    missing = missing_target(
        session, test_case_id=schedule.test_case_id, test_suite_id=schedule.test_suite_id
    )
    if missing is not None:
        if not explicit:
            _disable(schedule, f"its {missing} was deleted (found by the scheduler at the slot of {slot_at})")
        return []
    running = active_runs(session, schedule.id)
    if running and schedule.overlap == "skip" and not explicit:
        return []
    if running and schedule.overlap == "cancel_previous":
        _cancel_runs(session, running, actor=actor, reason=f"schedule {schedule.name}: a newer run started")
    item: dict[str, Any] = {
        "priority": Priority(schedule.priority),
        "trigger_kind": TriggerKind.SCHEDULED,
        "requested_by": schedule.created_by,
        "params": schedule.params,
        "schedule_id": schedule.id,
        "slot_at": slot_at,
        "run_id": f"{schedule.name}@{slot_at.isoformat()}",
    }
    actor_name, max_attempts = f"schedule:{schedule.name}", get_settings().max_attempts
    try:
        with session.begin_nested():  # a second beat firing the same slot loses here, harmlessly
            if schedule.test_suite_id is not None:
                suite = get_suite(session, schedule.test_suite_id)
                # Each member's policy is its case's under the suite's (no submission layer here).
                _, children = create_suite_execution(
                    session,
                    suite=suite,
                    retry_policy=None,
                    actor=actor_name,
                    max_attempts=max_attempts,
                    now=now,
                    **item,
                )
                return children
            case = get_case(session, schedule.test_case_id)  # type: ignore[arg-type]
            (execution,) = insert_executions(
                session,
                [
                    NewExecution(
                        snapshot=case_snapshot(case),
                        test_case_id=case.id,
                        retry_policy=resolve_retry_policy(case.retry_policy).as_dict(),
                        **item,
                    )
                ],
                actor=actor_name,
                max_attempts=max_attempts,
                now=now,
            )
            return [(execution.id, execution.priority)]
    except IntegrityError:
        return []
    except InvalidInput as exc:  # a suite whose members are all gone (tagged ones may come back)
        if explicit:
            raise
        log.warning(
            "schedule %r (%s) passed over its slot at %s: %s", schedule.name, schedule.id, slot_at, exc
        )
        return []


def _cancel_runs(session: Session, roots: list[uuid.UUID], *, actor: str, reason: str) -> None:
    """Cancel what is still going under these roots.

    A root may itself be finished while its tree is not (a case that failed is RETRYING while its
    retry waits), so the unfinished executions are cancelled, roots (suites: with their members) first.
    """
    going = session.execute(
        select(Execution.id, Execution.root_execution_id)
        .where(Execution.root_execution_id.in_(roots), Execution.status.in_([s.value for s in ACTIVE]))
        .order_by(Execution.created_at)
    ).all()
    for execution_id, _ in sorted(going, key=lambda row: row.id != row.root_execution_id):
        status = session.scalar(select(Execution.status).where(Execution.id == execution_id))
        if status is not None and Status(status) in ACTIVE:  # a suite's cancel may have got it already
            cancel(session, execution_id, actor=actor, reason=reason)


def trigger_now(session: Session, schedule: Schedule, *, actor: str) -> tuple[Execution, Publish]:
    """Run the schedule's target now (its slot: the database clock), whatever its overlap policy says.

    Returns the execution it started (a suite execution for a suite) and what to publish after the commit.
    """
    slot_at = read_db_now(session)
    to_publish = fire(session, schedule, slot_at=slot_at, now=slot_at, actor=actor, explicit=True)
    execution = session.scalar(
        select(Execution).where(Execution.schedule_id == schedule.id, Execution.slot_at == slot_at)
    )
    if execution is None:
        target = "test case" if schedule.test_case_id else "test suite"
        raise Conflict(f"schedule {schedule.name!r} cannot run: its {target} no longer exists")
    return execution, to_publish


def last_runs(session: Session, schedule_ids: list[uuid.UUID]) -> dict[uuid.UUID, Execution]:
    """Each schedule's latest run (the execution of its latest slot, a trigger-now included), in one
    query through the (schedule_id, slot_at) unique index."""
    if not schedule_ids:
        return {}
    latest = (
        select(Execution.schedule_id, func.max(Execution.slot_at).label("slot_at"))
        .where(Execution.schedule_id.in_(schedule_ids))
        .group_by(Execution.schedule_id)
        .subquery()
    )
    runs = session.scalars(
        select(Execution).join(
            latest,
            (Execution.schedule_id == latest.c.schedule_id) & (Execution.slot_at == latest.c.slot_at),
        )
    )
    return {run.schedule_id: run for run in runs if run.schedule_id is not None}


def targets_of(session: Session, schedules: list[Schedule]) -> dict[uuid.UUID, tuple[str, bool]]:
    """Id -> (name, deleted) of the test cases and suites ``schedules`` start."""
    found: dict[uuid.UUID, tuple[str, bool]] = {}
    for model, ids in (
        (TestCase, [s.test_case_id for s in schedules if s.test_case_id is not None]),
        (TestSuite, [s.test_suite_id for s in schedules if s.test_suite_id is not None]),
    ):
        if ids:
            rows = session.execute(select(model.id, model.name, model.deleted_at).where(model.id.in_(ids)))
            found.update({ident: (name, deleted_at is not None) for ident, name, deleted_at in rows})
    return found
