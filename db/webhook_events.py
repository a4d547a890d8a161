"""The events webhooks hear, written to the outbox in the transaction that makes them happen.

- ``execution.finished``: a run ended — a case run (its last retry), a suite, a sharded case; not a
  suite's member or a shard, which are parts of a run. Called by db/reactions.py after the run's
  retries, gate and suite settlement, so the event carries the final status and gate.
- ``test.flaky_detected``: a result just recorded makes a test flaky in the flaky window; sent once
  per subscription and window while it stays flaky.
- ``test.quarantine_changed``: quarantined, released or expired (db/quarantine.py).

Nothing is read when nobody subscribes to the event: one small query of the subscriptions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from anvil.domain.flaky import Thresholds, in_words
from anvil.domain.gates import failing_tests, last_attempts, measure
from anvil.domain.results import FAILING
from anvil.domain.states import Status
from anvil.domain.webhooks import EXECUTION_FINISHED, FLAKY_DETECTED, QUARANTINE_CHANGED, change
from anvil.settings import get_settings
from db.flaky import RESULTS, verdicts
from db.gates import previous_run, result_rows
from db.models import Execution, Test, TestCase, WebhookDelivery
from db.types import utcnow
from db.webhooks import enqueue, listening

NAMES_KEPT = 50  # failing tests named in an event (the counts say how many in all)


def _link(path: str) -> str | None:
    base = get_settings().public_url
    return f"{base.rstrip('/')}{path}" if base else None


def runs_finished(session: Session, ended: Sequence[uuid.UUID]) -> None:
    """Write ``execution.finished`` for the runs that the executions in ``ended`` finished."""
    if not ended:
        return
    hooks = listening(session, EXECUTION_FINISHED)
    if not hooks:
        return
    e, root = Execution, aliased(Execution)
    rows = session.execute(
        select(e.id, e.status, e.finished_at, e.error, e.retry_index, root.id)
        .join(root, root.id == e.root_execution_id)
        .where(
            e.id.in_(list(dict.fromkeys(ended))),
            e.status != Status.RETRYING.value,
            or_(
                e.id == root.id,  # a case run, a suite, a sharded case
                and_(root.test_case_id.is_not(None), root.shard_plan.is_(None), e.retry_index > 0),
            ),
        )
        .order_by(e.finished_at, e.id)
    ).all()
    for final_id, status, finished_at, error, retries, root_id in rows:
        run = session.get(Execution, root_id, populate_existing=True)
        assert run is not None
        data = _finished_data(session, run, final_id, status, finished_at, error, retries)
        enqueue(session, EXECUTION_FINISHED, data, hooks=hooks)


def _finished_data(
    session: Session,
    run: Execution,
    final_id: uuid.UUID,
    status: str,
    finished_at: datetime | None,
    error: str | None,
    retries: int,
) -> dict[str, Any]:
    rows = result_rows(session, run.id)
    names = {row.test: row.name for row in rows}
    failing = failing_tests(rows)
    counts = measure(last_attempts(rows))
    previous = previous_run(session, run)
    previous_status = _final_status(session, previous) if previous else None
    newly = failing - failing_tests(result_rows(session, previous)) if previous else failing
    start = run.started_at or run.created_at
    snapshot = run.case_snapshot or {}
    return {
        "execution_id": str(run.id),
        "final_execution_id": str(final_id),
        "name": snapshot.get("name"),
        "kind": "suite" if run.test_case_id is None else "case",
        "test_case_id": str(run.test_case_id) if run.test_case_id else None,
        "test_suite_id": str(run.test_suite_id) if run.test_suite_id else None,
        "schedule_id": str(run.schedule_id) if run.schedule_id else None,
        "status": status,
        "previous_status": previous_status,
        "previous_execution_id": str(previous) if previous else None,
        "change": change(status, previous_status),
        "trigger_kind": run.trigger_kind,
        "priority": run.priority,
        "branch": run.branch,
        "revision": run.revision,
        "environment": run.environment,
        "retries": retries,
        "created_at": run.created_at.isoformat(),
        "finished_at": finished_at.isoformat() if finished_at else None,
        "duration_s": round((finished_at - start).total_seconds(), 3) if finished_at else None,
        "counts": {
            "tests": counts.tests,
            "passed": counts.passed,
            "failed": counts.failed,
            "errors": counts.errors,
            "skipped": counts.skipped,
            "quarantined": counts.quarantined,
        },
        "gate": run.gate,
        "failing_tests": sorted(str(names[t]) for t in failing)[:NAMES_KEPT],
        "failing_count": len(failing),
        "newly_failing_tests": sorted(str(names[t]) for t in newly)[:NAMES_KEPT],
        "newly_failing_count": len(newly),
        "error": error,
        "url": _link(f"/ui/executions/{run.id}"),
    }


def _final_status(session: Session, run_id: uuid.UUID) -> str | None:
    """A run's result: a suite's or sharded case's own; a case run's, its last retry's."""
    e = Execution
    return session.scalar(
        select(e.status)
        .where(e.root_execution_id == run_id, or_(e.id == run_id, e.retry_index > 0))
        .order_by(e.retry_index.desc(), e.created_at.desc())
        .limit(1)
    )


def flaky_detected(session: Session, executions: Sequence[uuid.UUID]) -> None:
    """Write ``test.flaky_detected`` for tests that the results of ``executions`` made flaky."""
    if not executions:
        return
    hooks = listening(session, FLAKY_DETECTED)
    if not hooks:
        return
    c = RESULTS.c
    suspects = session.scalars(
        select(c.test_id)
        .where(c.execution_id.in_(list(executions)), or_(c.status.in_(FAILING), c.flaky_retry.is_(True)))
        .distinct()
    ).all()
    if not suspects:
        return
    settings = get_settings()
    now = utcnow()
    since = now - timedelta(days=settings.flaky_window_days)
    found = verdicts(session, [c.recorded_at >= since], suspects, Thresholds.of(settings))
    for test_id, (verdict, _) in sorted(found.items()):
        told = _already_told(session, test_id, since)
        fresh = [hook for hook in hooks if hook.id not in told]
        if not fresh:
            continue
        test, case_name = session.execute(
            select(Test, TestCase.name)
            .join(TestCase, TestCase.id == Test.test_case_id)
            .where(Test.id == test_id)
        ).one()
        data = {
            **_test_data(test, case_name),
            "evidence": [in_words(evidence) for evidence in verdict.evidence],
            "strongest": verdict.strongest,
            "window_days": settings.flaky_window_days,
        }
        enqueue(session, FLAKY_DETECTED, data, hooks=fresh)


def _already_told(session: Session, test_id: uuid.UUID, since: datetime) -> set[uuid.UUID]:
    """The subscriptions already sent this test's flakiness within the window."""
    d = WebhookDelivery
    return set(
        session.scalars(
            select(d.webhook_id).where(
                d.event_type == FLAKY_DETECTED,
                d.created_at >= since,
                d.event["data"]["test_id"].as_string() == str(test_id),
            )
        )
    )


def quarantine_changed(
    session: Session,
    test_ids: Sequence[uuid.UUID],
    action: str,
    *,
    actor: str,
    reason: str | None = None,
    expires_at: datetime | None = None,
) -> None:
    """Write ``test.quarantine_changed`` for each test (action: quarantined, released, expired)."""
    hooks = listening(session, QUARANTINE_CHANGED) if test_ids else []
    if not hooks:
        return
    rows = session.execute(
        select(Test, TestCase.name)
        .join(TestCase, TestCase.id == Test.test_case_id)
        .where(Test.id.in_(list(test_ids)))
        .order_by(Test.id)
    ).all()
    for test, case_name in rows:
        data = {
            **_test_data(test, case_name),
            "action": action,
            "actor": actor,
            "reason": reason,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        enqueue(session, QUARANTINE_CHANGED, data, hooks=hooks)


def _test_data(test: Test, case_name: str) -> dict[str, Any]:
    return {
        "test_id": str(test.id),
        "test_key": test.key,
        "test_name": test.name,
        "test_case_id": str(test.test_case_id),
        "case_name": case_name,
        "url": _link(f"/ui/tests/{test.id}"),
    }
