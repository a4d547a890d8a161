"""Retention against the real database: old execution trees go in small batches with their steps,
transitions and events; their test results stay until their own cutoff; active trees stay whole."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.junit_import import read_report
from anvil.domain.states import Status
from anvil.settings import Settings, get_settings
from db.executions import Source
from db.imports import import_report
from db.models import Execution, TestCase
from db.session import new_session
from db.transitions import transition
from db.types import utcnow
from scheduler.retention import run_retention
from tests.helpers import make_suite_run
from tests.integration.scheduling import case_in_db, claim_one, finish_one, run_as_worker, sql, tick

THREE_TESTS = b"""<testsuite name="calc">
  <testcase classname="calc" name="adds"/><testcase classname="calc" name="subtracts"/>
  <testcase classname="calc" name="divides"><failure message="x"/></testcase>
</testsuite>"""


def settings(**changes: Any) -> Settings:
    return get_settings().model_copy(
        update={"retention_days": 90, "results_retention_days": 365, "retention_batch": 2, **changes}
    )


def imported(case: TestCase, xml: bytes = THREE_TESTS, *, days_ago: float = 0) -> uuid.UUID:
    """A finished execution of ``case`` with its steps, transitions, events and test results."""
    report = read_report(xml, pytest_ids=False, output_cap=4096, now=utcnow())
    with new_session() as s, s.begin():
        execution = import_report(
            s,
            case=s.get(TestCase, case.id),  # type: ignore[arg-type]
            report=report,
            requested_by=None,
            actor="import:test",
            source=Source(),
            run_id=None,
            max_attempts=3,
            now=utcnow(),
            origin={},
        )
    age(execution.id, days_ago)
    return execution.id


def age(root_id: uuid.UUID, days: float, *, results: bool = False) -> None:
    """Move a tree (and with ``results`` its test results and tests) ``days`` into the past."""
    shift = "make_interval(secs => :days * 86400)"
    sql(
        f"UPDATE executions SET created_at = created_at - {shift}, started_at = started_at - {shift}, "
        f"finished_at = finished_at - {shift} WHERE root_execution_id = :id",
        id=root_id,
        days=days,
    )
    if results:
        sql(
            f"UPDATE test_results SET recorded_at = recorded_at - {shift} WHERE root_execution_id = :id",
            id=root_id,
            days=days,
        )
        sql(
            f"UPDATE result_rollups SET recorded_at = recorded_at - {shift} "
            "WHERE execution_id IN (SELECT id FROM executions WHERE root_execution_id = :id)",
            id=root_id,
            days=days,
        )
        sql(
            f"UPDATE tests SET first_seen_at = first_seen_at - {shift}, "
            f"last_seen_at = last_seen_at - {shift} "
            "WHERE id IN (SELECT test_id FROM test_results WHERE root_execution_id = :id)",
            id=root_id,
            days=days,
        )


def count(table: str, where: str = "TRUE", **params: Any) -> int:
    return int(sql(f"SELECT count(*) FROM {table} WHERE {where}", **params)[0][0])


def rows_of(ids: list[uuid.UUID]) -> dict[str, int]:
    """How many rows of each kind these executions still have."""
    found = {"executions": count("executions", "id = ANY(:ids)", ids=ids)}
    for table in ("step_traces", "execution_transitions", "execution_events"):
        found[table] = count(table, "execution_id = ANY(:ids)", ids=ids)
    found["test_results"] = count("test_results", "execution_id = ANY(:ids)", ids=ids)
    return found


def test_old_trees_are_deleted_in_batches_keeping_results_and_active_trees(
    session: Session, queued: Callable[..., uuid.UUID]
) -> None:
    case = case_in_db(session)
    old = [imported(case, days_ago=100) for _ in range(3)]
    recent = imported(case, days_ago=10)
    # A test that failed and passed on its retry, long ago: a tree of two, the retry the leaf.
    policy = {"max_retries": 1, "retry_on": ["FAILED"]}
    first = queued(case_in_db(session, retry_policy=policy), retry_policy=policy)
    run_as_worker(first, Status.FAILED)
    (retry,) = [row[0] for row in sql("SELECT id FROM executions WHERE parent_execution_id = :id", id=first)]
    with new_session() as s, s.begin():
        transition(s, retry, Status.QUEUED, from_=Status.SCHEDULED, actor="test")
    finish_one(retry, claim_one(retry), Status.PASSED)
    age(first, 100)
    # Still active though old: never deleted. A suite run with one member finished, one waiting.
    waiting = queued()
    age(waiting, 100)
    suite, (done_member, waiting_member) = make_suite_run(session, 2)
    run_as_worker(done_member, Status.PASSED)
    age(suite, 100)

    gone = [*old, first, retry]
    before = rows_of(gone)
    assert before["step_traces"] == 9 and before["execution_transitions"] > 9 and before["test_results"] == 11

    report = run_retention(settings(), holder="test-beat", force=True)

    assert report is not None and report.finished
    assert report.deleted["executions"] == 5 and report.deleted["steps"] == 9
    assert report.batches >= 3 + 5  # two rows a transaction: steps alone took five
    assert rows_of(gone) == {
        "executions": 0,
        "step_traces": 0,
        "execution_transitions": 0,
        "execution_events": 0,
        "test_results": 11,  # statistics and flaky detection keep them
    }
    kept = [recent, waiting, suite, done_member, waiting_member]
    assert count("executions", "id = ANY(:ids)", ids=kept) == 5
    assert rows_of([recent])["step_traces"] == 3
    assert count("execution_transitions", "execution_id = :id", id=done_member) == 3
    assert count("tests") == 5  # nothing past results retention


def test_results_past_their_own_retention_go_and_tests_with_none_left_unless_quarantined(
    session: Session,
) -> None:
    case = case_in_db(session)
    ancient = imported(case)
    age(ancient, 400, results=True)
    imported(case, b'<testsuite><testcase classname="calc" name="adds"/></testsuite>', days_ago=5)
    sql("UPDATE tests SET quarantined_at = now(), quarantine_reason = 'flaky' WHERE key = 'calc::divides'")

    report = run_retention(settings(), holder="test-beat", force=True)

    assert report is not None
    assert report.deleted["test_results"] == 3 and report.deleted["executions"] == 1
    assert count("test_results", "execution_id = :id", id=ancient) == 0
    assert (
        report.deleted["result_rollups"] == 1
        and count("result_rollups", "execution_id = :id", id=ancient) == 0
    )
    # adds ran recently; divides is quarantined; subtracts has no result left: it goes.
    assert sorted(row[0] for row in sql("SELECT key FROM tests")) == ["calc::adds", "calc::divides"]


def test_settled_webhook_deliveries_go_with_the_executions_cutoff(session: Session) -> None:
    from datetime import timedelta

    from db.models import WebhookDelivery
    from db.secrets import box_for
    from db.webhooks import create

    with session.begin():
        hook, _ = create(
            session, name="h", url="https://h.example/x", fmt="standard", events=["execution.finished"],
            filters={}, created_by=None, box=box_for(get_settings()),
        )  # fmt: skip
        now = utcnow()
        for status, days in (("delivered", 100), ("failed", 100), ("pending", 100), ("delivered", 5)):
            at = now - timedelta(days=days)
            session.add(
                WebhookDelivery(
                    id=uuid.uuid4(),
                    webhook_id=hook.id,
                    event_type="execution.finished",
                    event={},
                    status=status,
                    attempts=1,
                    created_at=at,
                    next_attempt_at=at,
                )  # fmt: skip
            )

    report = run_retention(settings(), holder="test-beat", force=True)

    assert report is not None and report.deleted["webhook_deliveries"] == 2
    kept = sorted((row[0], round(row[1])) for row in sql(
        "SELECT status, extract(epoch FROM now() - created_at) / 86400 FROM webhook_deliveries"
    ))  # fmt: skip
    assert kept == [("delivered", 5), ("pending", 100)]  # the recent one, and one still being tried


def test_the_tick_runs_a_round_at_most_once_a_minute_and_an_unfinished_one_goes_on_next_tick(
    session: Session,
) -> None:
    case = case_in_db(session)
    old = [imported(case, days_ago=100) for _ in range(2)]
    first = tick(settings())
    assert first.retention is not None and first.retention.deleted["executions"] == 2
    assert tick(settings()).retention is None  # not due again for a minute
    assert count("executions", "id = ANY(:ids)", ids=old) == 0

    more = imported(case, days_ago=100)
    cut_short = run_retention(settings(), holder="test-beat", force=True, budget_s=0)
    assert cut_short is not None and not cut_short.finished and cut_short.batches == 0
    resumed = tick(settings())  # due at once: the last round had more to do
    assert resumed.retention is not None and resumed.retention.deleted["executions"] == 1
    assert count("executions", "id = :id", id=more) == 0
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(Execution)) == 0
