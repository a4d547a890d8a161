"""Per-test results on PostgreSQL: written with the execution's result, exactly once, fenced by the
attempt, with the submission's revision/branch/environment; a pass on retry after a failure is flaky."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord, summarize
from db.attempts import finish
from db.executions import Source
from db.models import Execution, Test, TestCase, TestResult
from db.session import new_session
from db.transitions import transition
from tests.helpers import claim_attempt, create_execution, write_step

LEASE_S = 30.0
SOURCE = Source(revision="a1b2c3d", branch="main", environment="ci")


def pytest_case(session: Session) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=f"py-{uuid.uuid4().hex[:6]}",
            kind="pytest",
            spec={"workspace": "demo", "args": ["tests"]},
            tags=[],
            timeout_s=60,
            retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.01, "jitter": 0},
        )
        session.add(case)
    return case


def item_step(seq: int, nodeid: str, status: str, duration: float = 0.5) -> StepRecord:
    now = datetime.now(UTC)
    return StepRecord(
        seq=seq, name=nodeid, status=status, started_at=now, finished_at=now, duration_s=duration,
        details={"kind": "test"},
    )  # fmt: skip


def new_execution(case: TestCase, **fields: object) -> uuid.UUID:
    with new_session() as s, s.begin():
        execution = create_execution(
            s, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API, requested_by=None,
            source=SOURCE, **fields,
        )  # fmt: skip
    return execution.id


def claim(execution_id: uuid.UUID, worker: str) -> int:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker=worker, lease_s=LEASE_S)
    assert attempt is not None
    return attempt


def finish_with(execution_id: uuid.UUID, attempt: int, status: Status, steps: list[StepRecord]) -> bool:
    with new_session() as s, s.begin():
        return finish(
            s, execution_id, attempt=attempt, status=status, actor="worker:t",
            summary=summarize([st.status for st in steps]), steps=steps,
        )  # fmt: skip


def results_of(execution_id: uuid.UUID) -> dict[str, TestResult]:
    with new_session() as s:
        rows = s.execute(
            select(Test.key, TestResult)
            .join(Test, Test.id == TestResult.test_id)
            .where(TestResult.execution_id == execution_id)
        ).all()
        return {key: result for key, result in rows}


def test_a_finished_pytest_execution_records_one_result_per_test_with_its_source(session: Session) -> None:
    case = pytest_case(session)
    execution_id = new_execution(case)
    attempt = claim(execution_id, "w1")
    # One step written by the heartbeat before the result, the others with it.
    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=attempt, step=item_step(1, "tests/t.py::a", "passed"),
                          lease_s=LEASE_S)  # fmt: skip
    assert finish_with(
        execution_id,
        attempt,
        Status.PASSED,
        [
            item_step(2, "tests/t.py::b[1-2]", "passed", 1.25),
            item_step(3, "tests/t.py::c", "skipped"),
            item_step(4, "tests/t.py::d", "xfailed"),
        ],
    )
    results = results_of(execution_id)
    assert {key: (r.status, r.detail) for key, r in results.items()} == {
        "tests/t.py::a": ("passed", None),
        "tests/t.py::b[1-2]": ("passed", None),
        "tests/t.py::c": ("skipped", None),
        "tests/t.py::d": ("skipped", "xfailed"),
    }
    b = results["tests/t.py::b[1-2]"]
    assert (b.revision, b.branch, b.environment, b.duration_s, b.attempt) == (
        "a1b2c3d",
        "main",
        "ci",
        1.25,
        1,
    )
    with new_session() as s:
        tests = {t.key: t for t in s.scalars(select(Test).where(Test.test_case_id == case.id))}
        assert tests["tests/t.py::a"].file == "tests/t.py"
        assert tests["tests/t.py::a"].kind == "pytest"
        assert tests["tests/t.py::a"].last_execution_id == execution_id


def test_only_the_attempt_that_owns_the_execution_records_results_and_only_once(session: Session) -> None:
    case = pytest_case(session)
    execution_id = new_execution(case)
    stale = claim(execution_id, "w1")
    with new_session() as s, s.begin():
        write_step(
            s, execution_id, attempt=stale, step=item_step(1, "tests/t.py::old", "failed"), lease_s=LEASE_S
        )
    # The lease expired: the sweep re-queues it, another worker claims the next attempt.
    with new_session() as s, s.begin():
        transition(
            s, execution_id, Status.QUEUED, from_=Status.RUNNING, actor="lease-sweep", reason="lease lost"
        )
    fresh = claim(execution_id, "w2")
    assert fresh == stale + 1
    assert finish_with(execution_id, fresh, Status.PASSED, [item_step(1, "tests/t.py::a", "passed")])
    # The stale worker comes back and tries to record its result: fenced, nothing written.
    assert not finish_with(execution_id, stale, Status.FAILED, [item_step(2, "tests/t.py::b", "failed")])
    results = results_of(execution_id)
    assert list(results) == ["tests/t.py::a"]  # the stale attempt's steps are not the result
    assert results["tests/t.py::a"].attempt == fresh
    # A repeated reaction (a bug, a replay) cannot add a second row.
    from db.test_results import record_results

    with new_session() as s, s.begin():
        record_results(s, [execution_id])
    assert len(results_of(execution_id)) == 1


def test_a_rolled_back_result_leaves_no_test_results(session: Session) -> None:
    case = pytest_case(session)
    execution_id = new_execution(case)
    attempt = claim(execution_id, "w1")
    with new_session() as s:
        s.begin()
        assert finish(s, execution_id, attempt=attempt, status=Status.PASSED, actor="w", summary={},
                      steps=[item_step(1, "tests/t.py::a", "passed")])  # fmt: skip
        s.rollback()
    assert results_of(execution_id) == {}


def test_a_test_that_passes_on_the_retry_after_failing_is_marked_flaky(session: Session) -> None:
    case = pytest_case(session)
    first = new_execution(
        case, retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.01}
    )
    attempt = claim(first, "w1")
    assert finish_with(
        first,
        attempt,
        Status.FAILED,
        [item_step(1, "tests/t.py::a", "passed"), item_step(2, "tests/t.py::b", "failed")],
    )
    with new_session() as s:
        retry = s.scalars(select(Execution).where(Execution.parent_execution_id == first)).one()
        assert retry.trigger_kind == "retry"
        assert (retry.revision, retry.branch, retry.environment) == ("a1b2c3d", "main", "ci")
    with new_session() as s, s.begin():
        s.execute(update(Execution).where(Execution.id == retry.id).values(status="QUEUED"))
    attempt = claim(retry.id, "w1")
    assert finish_with(
        retry.id,
        attempt,
        Status.PASSED,
        [item_step(1, "tests/t.py::a", "passed"), item_step(2, "tests/t.py::b", "passed")],
    )
    results = results_of(retry.id)
    assert results["tests/t.py::b"].flaky_retry is True
    assert results["tests/t.py::a"].flaky_retry is False  # it never failed
    assert results["tests/t.py::b"].retry_index == 1


def test_a_generic_case_is_one_test_and_a_cancelled_one_records_nothing(session: Session) -> None:
    with session.begin():
        spec = {"workspace": "demo", "steps": [{"run": ["true"]}]}
        case = TestCase(id=uuid.uuid4(), name=f"gen-{uuid.uuid4().hex[:6]}", kind="generic", spec=spec,
                        tags=[], timeout_s=60)  # fmt: skip
        session.add(case)
    ran = new_execution(case)
    attempt = claim(ran, "w1")
    assert finish_with(ran, attempt, Status.FAILED, [item_step(1, "step 1", "failed")])
    assert {k: r.status for k, r in results_of(ran).items()} == {case.name: "failed"}
    stopped = new_execution(case)
    attempt = claim(stopped, "w1")
    assert finish_with(stopped, attempt, Status.CANCELLED, [item_step(1, "step 1", "cancelled")])
    assert results_of(stopped) == {}


def test_results_are_recorded_the_same_way_on_sqlite(sqlite_session: Session) -> None:
    """Standalone mode (SQLite) takes the portable path of db/test_results.py."""
    case = pytest_case(sqlite_session)
    first = new_execution(case)
    attempt = claim(first, "w1")
    assert finish_with(
        first, attempt, Status.FAILED, [item_step(1, "t.py::a", "passed"), item_step(2, "t.py::b", "failed")]
    )
    second = new_execution(case)
    attempt = claim(second, "w1")
    assert finish_with(
        second, attempt, Status.PASSED, [item_step(1, "t.py::a", "passed"), item_step(2, "t.py::b", "passed")]
    )
    assert {k: r.status for k, r in results_of(first).items()} == {"t.py::a": "passed", "t.py::b": "failed"}
    assert {k: r.status for k, r in results_of(second).items()} == {"t.py::a": "passed", "t.py::b": "passed"}
    with new_session() as s:
        tests = s.scalars(select(Test).where(Test.test_case_id == case.id)).all()
        assert sorted((t.key, t.last_status) for t in tests) == [("t.py::a", "passed"), ("t.py::b", "passed")]


def test_a_test_keeps_its_last_status_and_a_quarantined_one_is_marked_in_its_results(
    session: Session,
) -> None:
    case = pytest_case(session)
    first = new_execution(case)
    finish_with(first, claim(first, "w1"), Status.FAILED, [item_step(1, "t.py::a", "failed")])
    with new_session() as s, s.begin():
        s.execute(update(Test).where(Test.key == "t.py::a").values(quarantined_at=datetime.now(UTC)))
    second = new_execution(case)
    finish_with(second, claim(second, "w1"), Status.PASSED, [item_step(1, "t.py::a", "passed")])
    assert results_of(first)["t.py::a"].quarantined is False
    assert results_of(second)["t.py::a"].quarantined is True
    with new_session() as s:
        test = s.scalars(select(Test).where(Test.test_case_id == case.id)).one()
        assert (test.last_status, test.last_execution_id) == ("passed", second)
