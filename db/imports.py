"""Results run elsewhere (a JUnit report from CI), stored as one finished execution.

The execution goes the way a run on a worker goes, in the caller's one transaction: inserted
QUEUED through the one insert path (never published), RUNNING at attempt 1 (the claim, by
``import:<user>``), its steps written by that attempt, then its result. The commit's reaction
(db/reactions.py) records its test results from the steps of attempt 1, as for any run: the
snapshot carries ``imported`` (anvil/domain/results.py), so every testcase is its own test
whatever the case's kind. Quarantined tests are masked as a worker masks them
(anvil/domain/quarantine.py). No retry follows (the report cannot be run again).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.junit_import import ImportedReport
from anvil.domain.quarantine import QuarantineWatch
from anvil.domain.results import IMPORTED
from anvil.domain.states import Status
from anvil.domain.steps import Outcome
from db.attempts import renew_lease
from db.events import EXECUTIONS
from db.executions import NewExecution, Source, case_snapshot, insert_executions
from db.models import Execution, TestCase
from db.quarantine import quarantined_keys
from db.transitions import transition

# The lease the import's attempt holds while it writes its steps: it ends in the same transaction.
LEASE_S = 60.0


def import_report(
    session: Session,
    *,
    case: TestCase,
    report: ImportedReport,
    requested_by: uuid.UUID | None,
    actor: str,
    source: Source,
    run_id: str | None,
    max_attempts: int,
    now: datetime,
    origin: dict[str, Any],
    idempotency: tuple[str, str] | None = None,
) -> Execution:
    """Create the finished execution of ``report``; the caller commits. ``origin`` (the file's name,
    the format) is kept in the snapshot; ``idempotency`` is the request's (key, hash)."""
    snapshot = {**case_snapshot(case), IMPORTED: True, "origin": origin}
    (execution,) = insert_executions(
        session,
        [
            NewExecution(
                snapshot=snapshot,
                priority=Priority.NORMAL,
                trigger_kind=TriggerKind.CI,
                requested_by=requested_by,
                test_case_id=case.id,
                run_id=run_id,
                retry_policy={"max_retries": 0},
                source=source,
                reason="imported",
                idempotency_key=idempotency[0] if idempotency else None,
                request_hash=idempotency[1] if idempotency else None,
            )
        ],
        actor=actor,
        max_attempts=max_attempts,
    )
    c = EXECUTIONS.c
    claimed = transition(
        session,
        execution.id,
        Status.RUNNING,
        from_=Status.QUEUED,
        actor=actor,
        reason="imported",
        values={"attempt": c.attempt + 1, "started_at": report.started_at, "worker": "import"},
    )
    watch = QuarantineWatch(snapshot, quarantined_keys(session, case.id, now=now))
    steps = [watch.see(step) for step in report.steps]
    renew_lease(session, execution.id, attempt=claimed.attempt, lease_s=LEASE_S, steps=steps)
    outcome = watch.decide(Outcome(report.status, report.summary, report.error))
    transition(
        session,
        execution.id,
        outcome.status,
        from_=Status.RUNNING,
        attempt=claimed.attempt,
        actor=actor,
        reason=outcome.error,
        values={
            "finished_at": report.finished_at,
            "lease_expires_at": None,
            "summary": outcome.summary,
            "error": outcome.error,
        },
    )
    loaded = session.get(Execution, execution.id, populate_existing=True)
    assert loaded is not None
    return loaded
