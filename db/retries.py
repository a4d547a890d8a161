"""Retries: a FAILED/ERROR/TIMEOUT attempt with retries left becomes RETRYING, and a new child
execution (trigger_kind ``retry``) waits SCHEDULED until its backoff has passed.

Runs as a reaction in the same transaction as the status change (db/reactions.py), so a result
and its retry are committed together: nobody ever sees a failure that will still be retried as final.
A person may also retry any finished execution (``retry_now``); that child is due at once.

What a retry runs: a plain retry runs the same snapshot of the case as the execution it follows
(what ran is what runs again); a ``repair`` runs the case as it is now (its current spec and
version, a new snapshot). A case that was deleted is not run again: a person's retry is refused
(409) and no automatic retry is scheduled.

``retry_index`` counts the retries that followed a failure, and a retry that passes with
``retry_index`` > 0 is flaky. A ``repair`` (the test or the code was fixed) starts again at 0:
passing after a fix is not flakiness, and the repaired test gets its full retry budget.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import backoff_s, resolve_retry_policy, should_retry
from anvil.domain.states import ACTIVE, RETRYABLE, Status
from anvil.errors import Conflict, InvalidInput, NotFound
from db.executions import NewExecution, Source, case_snapshot, insert_executions
from db.models import Execution, Test, TestCase, TestResult
from db.sql import read_db_now
from db.transitions import transition

log = logging.getLogger("anvil.retries")


def schedule_retry(
    session: Session,
    execution_id: uuid.UUID,
    *,
    actor: str,
    repair: bool = False,
    force: bool = False,
    selection: dict[str, Any] | None = None,
) -> Execution | None:
    """Retry ``execution_id`` if its policy allows (or ``force``, for a person's request).

    Returns the new SCHEDULED child, or None when no retry is due.
    """
    failed = session.get(Execution, execution_id, populate_existing=True)
    if failed is None or failed.test_case_id is None or Status(failed.status) not in RETRYABLE:
        return None
    if failed.shard_plan is not None and not force:
        return None  # split into shards: each shard retries under its own policy
    policy = resolve_retry_policy(failed.retry_policy)
    if not force and not should_retry(policy, status=Status(failed.status), retry_index=failed.retry_index):
        return None
    case = session.get(TestCase, failed.test_case_id)
    if case is None or case.deleted_at is not None:
        log.info("no retry of execution %s: its test case %s was deleted", failed.id, failed.test_case_id)
        return None
    delay = 0.0 if force else backoff_s(policy, retry_index=failed.retry_index, rand=random.random())
    number = failed.retry_index + 1
    kind = TriggerKind.REPAIR if repair else TriggerKind.RETRY
    reason = (
        f"{kind.value} {number}" + (f" of {policy.max_retries}" if not force else "") + f" in {delay:.1f}s"
    )
    transition(session, failed.id, Status.RETRYING, actor=actor, reason=reason)
    return _follow_up(
        session,
        failed,
        kind=kind,
        actor=actor,
        delay_s=delay,
        retry_index=0 if repair else number,
        snapshot=case_snapshot(case) if repair else failed.case_snapshot,
        selection=selection,
    )


def retry_now(
    session: Session, execution_id: uuid.UUID, *, actor: str, repair: bool = False, failed_only: bool = False
) -> Execution:
    """A person's retry of a finished case execution: a new child (``retry``, or ``repair``), due now.

    FAILED/ERROR/TIMEOUT become RETRYING as with an automatic retry. Other finished statuses
    (PASSED, CANCELLED, SKIPPED, ABORTED) cannot change, so the child simply follows them;
    each execution is followed up at most once (retry the latest in the chain).
    A retry runs the snapshot ``execution_id`` ran; a repair runs the case's current version.
    ``failed_only``: only the tests that failed or errored in it (a sharded run: in any of its
    shards), as the retry's selection. Conflict when the case was deleted.
    """
    # Locked: two people retrying at once create one child; the second sees it and is refused.
    current = session.get(Execution, execution_id, with_for_update=True, populate_existing=True)
    if current is None:
        raise NotFound(f"execution {execution_id} does not exist", field="id")
    status = Status(current.status)
    if current.test_case_id is None:
        raise InvalidInput(
            f"execution {execution_id} is a suite execution; retry its members (or submit the suite again)",
            field="id",
        )
    case = session.get(TestCase, current.test_case_id)
    if case is None or case.deleted_at is not None:
        name = (current.case_snapshot or {}).get("name")
        raise Conflict(
            f"test case {name!r} ({current.test_case_id}) of execution {execution_id} was deleted, "
            "so it is not run again; define the case again and submit it to run it",
            current_status=status.value,
            test_case_id=str(current.test_case_id),
        )
    if status in ACTIVE:
        raise Conflict(
            f"execution {execution_id} is {status.value}; only a finished execution can be retried",
            current_status=status.value,
        )
    earlier = session.scalar(
        select(Execution.id)
        .where(
            Execution.parent_execution_id == execution_id,
            Execution.trigger_kind.in_([TriggerKind.RETRY.value, TriggerKind.REPAIR.value]),
        )
        .order_by(Execution.created_at.desc())
    )
    if earlier is not None:
        raise Conflict(
            f"execution {execution_id} was already retried by {earlier}; retry the latest attempt instead",
            current_status=status.value,
            retried_by=str(earlier),
        )
    selection = _failed_tests_selection(session, current) if failed_only else None
    if status in RETRYABLE:
        child = schedule_retry(
            session, execution_id, actor=actor, repair=repair, force=True, selection=selection
        )
        assert child is not None  # a retryable case execution always gets one when forced
        return child
    kind = TriggerKind.REPAIR if repair else TriggerKind.RETRY
    # Nothing failed in this attempt: the count of retries after failures carries over unchanged.
    return _follow_up(
        session,
        current,
        kind=kind,
        actor=actor,
        delay_s=0.0,
        retry_index=0 if repair else current.retry_index,
        snapshot=case_snapshot(case) if repair else current.case_snapshot,
        selection=selection,
    )


def _follow_up(
    session: Session,
    previous: Execution,
    *,
    kind: TriggerKind,
    actor: str,
    delay_s: float,
    retry_index: int,
    snapshot: dict[str, Any],
    selection: dict[str, Any] | None = None,
) -> Execution:
    """The SCHEDULED child that runs ``snapshot`` (``previous``'s, or for a repair the case's current
    one) again, in the same correlation, run and tree."""
    (child,) = insert_executions(
        session,
        [
            NewExecution(
                test_case_id=previous.test_case_id,
                snapshot=snapshot,
                test_suite_id=previous.test_suite_id,
                priority=Priority(previous.priority),
                trigger_kind=kind,
                requested_by=previous.requested_by,
                run_id=previous.run_id,
                params=previous.params,
                parent_execution_id=previous.id,
                correlation_id=previous.correlation_id,
                # A sharded run's retry is a tree of its own, as its shards hang under it.
                root_execution_id=None
                if previous.shard_plan is not None and previous.root_execution_id == previous.id
                else previous.root_execution_id,
                status=Status.SCHEDULED,
                run_at=read_db_now(session) + timedelta(seconds=delay_s),
                retry_policy=previous.retry_policy,
                retry_index=retry_index,
                source=Source.of(previous),
                selection=previous.selection if selection is None else selection,
                reason=f"{kind.value} of {previous.id}",
            )
        ],
        actor=actor,
        max_attempts=previous.max_attempts,
    )
    return child


def _failed_tests_selection(session: Session, execution: Execution) -> dict[str, Any]:
    """A selection of the tests whose last result in ``execution`` (with its shards, and their
    retries) was failed or error. InvalidInput when there is none."""
    r = TestResult
    latest: dict[str, tuple[Any, str]] = {}
    rows = session.execute(
        select(Test.key, r.status, r.recorded_at)
        .join(Test, Test.id == r.test_id)
        .where(or_(r.execution_id == execution.id, r.root_execution_id == execution.id))
        .order_by(r.recorded_at, r.id)
    )
    for key, status, at in rows:
        latest[key] = (at, status)
    failed = [key for key, (_, status) in latest.items() if status in ("failed", "error")]
    if not failed:
        raise InvalidInput(
            f"execution {execution.id} has no failed test to retry; retry it whole instead",
            field="body.failed_only",
        )
    return {
        "rules": ["failed-in-last:1"],
        "exclude": [],
        "whole": False,
        "tests": failed,
        "reason": f"retry of the failed tests of {execution.id}",
        "counts": {"selected": len(failed), "total": len(latest)},
    }
