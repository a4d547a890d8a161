"""Per-test results, written in the same transaction as the execution result that produces them.

db/reactions.py calls ``record_results`` just before a commit in which executions reached a result
(PASSED, FAILED, ERROR, TIMEOUT, CANCELLED). The transition to that result is fenced by the attempt
and happens once, so the results are too; the unique (execution, test) pair is the backstop. The
steps of the execution's current attempt are read back (those the heartbeat wrote earlier and those
written with the result), turned into one outcome per test (anvil/domain/results.py), and stored:
the ``tests`` rows upserted (first/last seen), then one ``test_results`` row per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from anvil.domain.results import FAILING, PASSED, StepView, TestOutcome, outcomes_of
from db.models import Execution, StepTrace, Test, TestResult

TESTS = cast(Table, Test.__table__)
RESULTS = cast(Table, TestResult.__table__)


def record_results(session: Session, execution_ids: Sequence[uuid.UUID]) -> None:
    for execution_id in dict.fromkeys(execution_ids):  # once each, in the order they finished
        execution = session.execute(
            select(Execution).where(Execution.id == execution_id).execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if execution is None or execution.test_case_id is None:
            continue  # a suite's own execution: its members record theirs
        steps = [
            StepView(name, status, duration, details)
            for name, status, duration, details in session.execute(
                select(StepTrace.name, StepTrace.status, StepTrace.duration_s, StepTrace.details)
                .where(StepTrace.execution_id == execution_id, StepTrace.attempt == execution.attempt)
                .order_by(StepTrace.seq)
            )
        ]
        duration = (
            (execution.finished_at - execution.started_at).total_seconds()
            if execution.finished_at and execution.started_at
            else None
        )
        outcomes = outcomes_of(
            execution.case_snapshot,
            steps,
            execution_status=execution.status,
            execution_duration_s=duration,
        )
        if outcomes:
            store_outcomes(session, execution, outcomes)


def store_outcomes(session: Session, execution: Execution, outcomes: Sequence[TestOutcome]) -> None:
    """Upsert the tests and insert one result each for ``execution`` (finished, with a case)."""
    assert execution.test_case_id is not None
    at: datetime = execution.finished_at or execution.created_at
    tests = upsert_tests(
        session, execution.test_case_id, execution.case_snapshot["kind"], outcomes, at, execution.id
    )
    failed_before = _failed_in_parent(session, execution) if execution.retry_index > 0 else set()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    rows = [
        {
            "test_id": tests[outcome.key][0],
            "test_case_id": execution.test_case_id,
            "test_suite_id": execution.test_suite_id,
            "execution_id": execution.id,
            "root_execution_id": execution.root_execution_id,
            "run_id": execution.run_id,
            "trigger_kind": execution.trigger_kind,
            "attempt": execution.attempt,
            "retry_index": execution.retry_index,
            "status": outcome.status,
            "detail": outcome.detail,
            "duration_s": outcome.duration_s,
            "revision": execution.revision,
            "branch": execution.branch,
            "environment": execution.environment,
            "flaky_retry": outcome.status == PASSED and tests[outcome.key][0] in failed_before,
            "quarantined": tests[outcome.key][1],
            "recorded_at": at,
        }
        for outcome in outcomes
    ]
    session.execute(insert(RESULTS).on_conflict_do_nothing(index_elements=["execution_id", "test_id"]), rows)


def upsert_tests(
    session: Session,
    case_id: uuid.UUID,
    kind: str,
    outcomes: Sequence[TestOutcome],
    at: datetime,
    execution_id: uuid.UUID,
) -> dict[str, tuple[uuid.UUID, bool]]:
    """Create the tests seen for the first time and mark all as seen; key -> (id, quarantined).

    Rows are taken in key order, so two executions of one case finishing together lock them in the
    same order (no deadlock).
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    ordered = sorted({o.key: o for o in outcomes}.values(), key=lambda o: o.key)
    new = insert(TESTS)
    statement = new.on_conflict_do_update(
        index_elements=["test_case_id", "key"],
        set_={
            "name": new.excluded.name,
            "file": new.excluded.file,
            "last_seen_at": new.excluded.last_seen_at,
            "last_status": new.excluded.last_status,
            "last_execution_id": new.excluded.last_execution_id,
        },
    ).returning(TESTS.c.key, TESTS.c.id, TESTS.c.quarantined_at, TESTS.c.quarantine_expires_at)
    found: dict[str, tuple[uuid.UUID, bool]] = {}
    for batch in _chunks(ordered, 1000):
        rows = session.execute(
            statement,
            [
                {
                    "id": uuid.uuid4(),
                    "test_case_id": case_id,
                    "key": o.key,
                    "kind": kind,
                    "name": o.name,
                    "file": o.file,
                    "first_seen_at": at,
                    "last_seen_at": at,
                    "last_status": o.status,
                    "last_execution_id": execution_id,
                }
                for o in batch
            ],
        ).all()
        for key, test_id, quarantined_at, expires_at in rows:
            found[key] = (test_id, quarantined(quarantined_at, expires_at, at))
    return found


def quarantined(quarantined_at: datetime | None, expires_at: datetime | None, at: datetime) -> bool:
    """Whether a test was under quarantine at ``at`` (an expired quarantine no longer holds)."""
    return quarantined_at is not None and (expires_at is None or expires_at > at)


def _failed_in_parent(session: Session, execution: Execution) -> set[uuid.UUID]:
    """Tests that failed in the execution this retry follows: passing now makes them flaky."""
    if execution.parent_execution_id is None:
        return set()
    return set(
        session.scalars(
            select(TestResult.test_id).where(
                TestResult.execution_id == execution.parent_execution_id,
                TestResult.status.in_(sorted(FAILING)),
            )
        )
    )


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
