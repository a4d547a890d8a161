"""Per-test results, written in the same transaction as the execution result that produces them.

db/reactions.py calls ``record_results`` just before a commit in which executions reached a result
(PASSED, FAILED, ERROR, TIMEOUT, CANCELLED). The transition to that result is fenced by the attempt
and happens once, so the results are too; the unique (execution, test) pair is the backstop. The
steps of the execution's current attempt are read back (those the heartbeat wrote earlier and those
written with the result), turned into one outcome per test (anvil/domain/results.py), and stored:
the ``tests`` rows upserted (first/last seen), then one ``test_results`` row per test.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from anvil.domain.histograms import histogram
from anvil.domain.quarantine import recorded_status
from anvil.domain.results import (
    ERROR,
    FAILED,
    FAILING,
    IMPORTED,
    PASSED,
    SINGLE_TEST_KINDS,
    SKIPPED,
    StepView,
    TestOutcome,
    outcomes_of,
)
from db.models import Execution, ResultRollup, StepTrace, Test, TestResult
from db.sql import chunks

TESTS = cast(Table, Test.__table__)
RESULTS = cast(Table, TestResult.__table__)
ROLLUPS = cast(Table, ResultRollup.__table__)
# Each run's slowest tests kept in its rollup: the slowest tests of a window are found among them.
SLOWEST_KEPT = 20


def record_results(session: Session, execution_ids: Sequence[uuid.UUID]) -> None:
    for execution_id in dict.fromkeys(execution_ids):  # once each, in the order they finished
        execution = session.execute(
            select(Execution).where(Execution.id == execution_id).execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if execution is None or execution.test_case_id is None:
            continue  # a suite's own execution: its members record theirs
        snapshot = execution.case_snapshot
        # A generic or manual case is one test, its result the execution's: no step to read back.
        whole = snapshot.get("kind") in SINGLE_TEST_KINDS and not snapshot.get(IMPORTED)
        steps = [] if whole else _steps_of(session, execution)
        duration = (
            (execution.finished_at - execution.started_at).total_seconds()
            if execution.finished_at and execution.started_at
            else None
        )
        outcomes = outcomes_of(
            snapshot,
            steps,
            # FAILED when only quarantine made it pass: its one test (generic, manual) did fail.
            execution_status=recorded_status(execution.status, execution.summary),
            execution_duration_s=duration,
        )
        if outcomes:
            store_outcomes(session, execution, outcomes)


def _steps_of(session: Session, execution: Execution) -> list[StepView]:
    """The steps of the execution's current attempt, with what outcomes_of reads of their details:
    for pytest only whether a step is a collection error (parsing a thousand JSON documents was
    a third of the cost of recording a pytest run's results)."""
    c = StepTrace.__table__.c
    pytest = execution.case_snapshot.get("kind") == "pytest"
    details = c.details["kind"].as_string() if pytest else c.details
    rows = session.execute(
        select(c.name, c.status, c.duration_s, details)
        .where(c.execution_id == execution.id, c.attempt == execution.attempt)
        .order_by(c.seq)
    )
    if pytest:
        return [StepView(name, status, duration, {"kind": kind}) for name, status, duration, kind in rows]
    return [StepView(name, status, duration, details) for name, status, duration, details in rows]


def store_outcomes(session: Session, execution: Execution, outcomes: Sequence[TestOutcome]) -> None:
    """Upsert the tests and insert one result each for ``execution`` (finished, with a case)."""
    assert execution.test_case_id is not None
    at: datetime = execution.finished_at or execution.created_at
    ordered = sorted({o.key: o for o in outcomes}.values(), key=lambda o: o.key)
    _store_rollup(session, execution, ordered, at)
    if session.get_bind().dialect.name == "postgresql":
        _store_postgresql(session, execution, ordered, at)
    else:
        _store_sqlite(session, execution, ordered, at)


def _store_sqlite(
    session: Session, execution: Execution, ordered: Sequence[TestOutcome], at: datetime
) -> None:
    """Standalone mode's twin of STORE_POSTGRESQL: the tests upserted (their ids read back), then the
    results."""
    assert execution.test_case_id is not None
    tests = _upsert_tests_sqlite(
        session, execution.test_case_id, execution.case_snapshot["kind"], ordered, at, execution.id
    )
    failed_before = _failed_in_parent(session, execution) if execution.retry_index > 0 else set()
    rows = [
        {
            **_result_columns(execution, at),
            "test_id": tests[outcome.key][0],
            "status": outcome.status,
            "detail": outcome.detail,
            "duration_s": outcome.duration_s,
            "flaky_retry": outcome.status == PASSED and tests[outcome.key][0] in failed_before,
            "quarantined": tests[outcome.key][1],
        }
        for outcome in ordered
    ]
    session.execute(
        sqlite_insert(RESULTS).on_conflict_do_nothing(index_elements=["execution_id", "test_id"]), rows
    )


def _store_rollup(
    session: Session, execution: Execution, ordered: Sequence[TestOutcome], at: datetime
) -> None:
    """The execution's row in result_rollups: what statistics over a window read per run."""
    counts = Counter(o.status for o in ordered)
    timed = sorted(
        (o for o in ordered if o.duration_s is not None), key=lambda o: (-(o.duration_s or 0.0), o.key)
    )
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(ROLLUPS)
        .values(
            execution_id=execution.id,
            run_execution_id=execution.parent_execution_id if execution.trigger_kind == "shard" else None,
            test_case_id=execution.test_case_id,
            branch=execution.branch,
            recorded_at=at,
            passed=counts[PASSED],
            failed=counts[FAILED],
            error=counts[ERROR],
            skipped=counts[SKIPPED],
            durations=histogram(o.duration_s for o in ordered),
            slowest=[[o.key, o.duration_s] for o in timed[:SLOWEST_KEPT]],
        )
        .on_conflict_do_nothing(index_elements=["execution_id"])
    )


def _result_columns(execution: Execution, at: datetime) -> dict[str, Any]:
    """What every result of ``execution`` shares."""
    return {
        "test_case_id": execution.test_case_id,
        "test_suite_id": execution.test_suite_id,
        "execution_id": execution.id,
        "root_execution_id": execution.root_execution_id,
        "run_id": execution.run_id,
        "trigger_kind": execution.trigger_kind,
        "attempt": execution.attempt,
        "retry_index": execution.retry_index,
        "revision": execution.revision,
        "branch": execution.branch,
        "environment": execution.environment,
        "recorded_at": at,
    }


# One statement, the outcomes passed as one JSON document: recording a 1,000-test run this way costs
# one round trip (as rows of VALUES it took ~300 ms; bench/history.py has today's figure). A test row
# is rewritten only when a reader would see a change: a new status, name or file, or a last sighting
# more than an hour old (rewriting every test of every run was half the cost). The results join the
# tests as they were (``known``) or as this statement wrote them (``written``: a statement does not
# see its own changes).
STORE_POSTGRESQL = text("""
WITH outcome AS (
    SELECT * FROM jsonb_to_recordset(CAST(:outcomes AS jsonb))
        AS o(key text, name text, file text, status text, detail text, duration_s float8)
),
known AS (
    SELECT k.id, k.key, k.name, k.file, k.last_status, k.last_seen_at,
           k.quarantined_at IS NOT NULL
           AND (k.quarantine_expires_at IS NULL OR k.quarantine_expires_at > :recorded_at) AS quarantined
    FROM outcome o JOIN tests k ON k.test_case_id = :test_case_id AND k.key = o.key
),
written AS (
    INSERT INTO tests AS t (id, test_case_id, key, kind, name, file, first_seen_at, last_seen_at,
                            last_status, last_execution_id)
    SELECT gen_random_uuid(), :test_case_id, o.key, :kind, o.name, o.file, :recorded_at, :recorded_at,
           o.status, :execution_id
    FROM outcome o LEFT JOIN known k ON k.key = o.key
    WHERE k.key IS NULL OR k.last_status IS DISTINCT FROM o.status OR k.name <> o.name
       OR k.file IS DISTINCT FROM o.file
       OR k.last_seen_at < CAST(:recorded_at AS timestamptz) - interval '1 hour'
    ORDER BY o.key
    ON CONFLICT (test_case_id, key) DO UPDATE SET
        name = excluded.name, file = excluded.file, last_seen_at = excluded.last_seen_at,
        last_status = excluded.last_status, last_execution_id = excluded.last_execution_id
    RETURNING t.id, t.key,
        t.quarantined_at IS NOT NULL
        AND (t.quarantine_expires_at IS NULL OR t.quarantine_expires_at > :recorded_at) AS quarantined
),
test AS (
    SELECT o.key, COALESCE(w.id, k.id) AS id, COALESCE(w.quarantined, k.quarantined) AS quarantined
    FROM outcome o LEFT JOIN written w ON w.key = o.key LEFT JOIN known k ON k.key = o.key
)
INSERT INTO test_results (test_id, test_case_id, test_suite_id, execution_id, root_execution_id, run_id,
    trigger_kind, attempt, retry_index, status, detail, duration_s, revision, branch, environment,
    flaky_retry, quarantined, recorded_at)
SELECT test.id, :test_case_id, CAST(:test_suite_id AS uuid), :execution_id, :root_execution_id,
    CAST(:run_id AS text), :trigger_kind, :attempt, :retry_index, o.status, o.detail, o.duration_s,
    CAST(:revision AS text), CAST(:branch AS text), CAST(:environment AS text),
    o.status = 'passed' AND test.id IN (
        SELECT test_id FROM test_results
        WHERE execution_id = CAST(:parent_id AS uuid) AND status IN ('failed', 'error')
    ),
    test.quarantined, :recorded_at
FROM outcome o JOIN test ON test.key = o.key
ON CONFLICT (execution_id, test_id) DO NOTHING
""")


def _store_postgresql(
    session: Session, execution: Execution, ordered: Sequence[TestOutcome], at: datetime
) -> None:
    outcomes = [
        {"key": o.key, "name": o.name, "file": o.file, "status": o.status, "detail": o.detail,
         "duration_s": o.duration_s}
        for o in ordered
    ]  # fmt: skip
    session.execute(
        STORE_POSTGRESQL,
        {
            **_result_columns(execution, at),
            "kind": execution.case_snapshot["kind"],
            "parent_id": execution.parent_execution_id if execution.retry_index > 0 else None,
            "outcomes": json.dumps(outcomes),
        },
    )


def _upsert_tests_sqlite(
    session: Session,
    case_id: uuid.UUID,
    kind: str,
    ordered: Sequence[TestOutcome],
    at: datetime,
    execution_id: uuid.UUID,
) -> dict[str, tuple[uuid.UUID, bool]]:
    """Create the tests seen for the first time and mark all as seen; key -> (id, quarantined)."""
    new = sqlite_insert(TESTS)
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
    for batch in chunks(ordered):
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
