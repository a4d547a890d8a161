"""Claims and fencing on real PostgreSQL: one winner per claim, stale attempts write nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from anvil.errors import InvalidTransition
from db.attempts import Lease, finish, renew_lease
from db.cancel import cancel
from db.events import list_events
from db.models import Execution, ExecutionTransition, StepTrace
from db.session import new_session
from db.transitions import transition
from tests.helpers import claim_attempt, lease_held, make_suite_run, write_step

LEASE_S = 30.0


def claim_in_own_session(execution_id: uuid.UUID, worker: str) -> int | None:
    with new_session() as s, s.begin():
        return claim_attempt(s, execution_id, worker=worker, lease_s=LEASE_S)


def state(execution_id: uuid.UUID) -> tuple[str, int, datetime | None, str | None]:
    with new_session() as s:
        row = s.execute(
            select(Execution.status, Execution.attempt, Execution.lease_expires_at, Execution.worker).where(
                Execution.id == execution_id
            )
        ).one()
        return row.status, row.attempt, row.lease_expires_at, row.worker


def transition_rows(execution_id: uuid.UUID) -> list[tuple[str | None, str, int]]:
    with new_session() as s:
        return [
            (r.from_status, r.to_status, r.attempt)
            for r in s.execute(
                select(ExecutionTransition)
                .where(ExecutionTransition.execution_id == execution_id)
                .order_by(ExecutionTransition.id)
            ).scalars()
        ]


def step_count(execution_id: uuid.UUID) -> int:
    with new_session() as s:
        return s.scalar(select(func.count()).where(StepTrace.execution_id == execution_id)) or 0


def step(seq: int = 1) -> StepRecord:
    return StepRecord(seq=seq, name=f"step {seq}", status="passed", output="ok")


def race(execution_id: uuid.UUID) -> dict[str, int | None]:
    """Two threads, each on its own connection, claim ``execution_id`` at the same moment."""
    barrier = threading.Barrier(2)
    results: dict[str, int | None] = {}
    errors: list[BaseException] = []

    def contender(name: str) -> None:
        try:
            with new_session() as s, s.begin():
                s.connection()  # connected and in a transaction before the barrier: both start together
                barrier.wait(timeout=10)
                results[name] = claim_attempt(s, execution_id, worker=name, lease_s=LEASE_S)
        except BaseException as exc:  # a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=contender, args=(name,)) for name in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_two_concurrent_claims_have_exactly_one_winner(queued: Callable[..., uuid.UUID]) -> None:
    for round_ in range(30):
        execution_id = queued()
        results = race(execution_id)
        winners = {name: attempt for name, attempt in results.items() if attempt is not None}
        assert len(results) == 2 and len(winners) == 1, f"round {round_}: {results}"
        ((winner, attempt),) = winners.items()
        assert attempt == 1
        status, db_attempt, lease, worker = state(execution_id)
        assert (status, db_attempt, worker) == ("RUNNING", 1, winner)
        assert lease is not None
        assert transition_rows(execution_id) == [(None, "QUEUED", 0), ("QUEUED", "RUNNING", 1)]


def test_a_claimed_execution_cannot_be_claimed_again(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    assert claim_in_own_session(execution_id, "w1") == 1
    assert claim_in_own_session(execution_id, "w2") is None
    assert state(execution_id)[1] == 1


def test_claim_of_an_unknown_execution_is_none(clean_db: str) -> None:
    assert claim_in_own_session(uuid.uuid4(), "w1") is None


def test_writes_with_a_wrong_attempt_are_refused_and_write_nothing(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    attempt = claim_in_own_session(execution_id, "w1")
    assert attempt == 1
    _, _, lease_before, _ = state(execution_id)

    for stale in (0, 2):
        with new_session() as s, s.begin():
            assert write_step(s, execution_id, attempt=stale, step=step(), lease_s=LEASE_S) is False
            assert lease_held(s, execution_id, attempt=stale, lease_s=LEASE_S * 10) is False
            assert (
                finish(s, execution_id, attempt=stale, status=Status.PASSED, actor="stale", summary={})
                is False
            )
    assert step_count(execution_id) == 0
    assert state(execution_id)[:3] == ("RUNNING", 1, lease_before)
    assert transition_rows(execution_id) == [(None, "QUEUED", 0), ("QUEUED", "RUNNING", 1)]

    # The owner can still write.
    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=1, step=step(), lease_s=LEASE_S) is True
    assert step_count(execution_id) == 1


def test_after_a_requeue_the_old_attempt_is_fenced_out(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    assert claim_in_own_session(execution_id, "old") == 1
    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=1, step=step(1), lease_s=LEASE_S)
        # The lease was lost: the execution goes back to the queue and another worker claims it.
        transition(
            s, execution_id, Status.QUEUED, from_=Status.RUNNING, attempt=1, actor="test", reason="lost"
        )
    assert claim_in_own_session(execution_id, "new") == 2
    _, _, lease_before, _ = state(execution_id)

    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=1, step=step(2), lease_s=LEASE_S) is False
        assert lease_held(s, execution_id, attempt=1, lease_s=LEASE_S * 10) is False
        assert finish(s, execution_id, attempt=1, status=Status.FAILED, actor="old", summary={}) is False
    assert state(execution_id) == ("RUNNING", 2, lease_before, "new")
    with new_session() as s:
        steps = s.execute(
            select(StepTrace.attempt, StepTrace.seq).where(StepTrace.execution_id == execution_id)
        )
        assert sorted(steps.tuples()) == [(1, 1)]

    # The new attempt owns the row: its writes and its final status land.
    with new_session() as s, s.begin():
        assert write_step(s, execution_id, attempt=2, step=step(1), lease_s=LEASE_S)
        assert finish(s, execution_id, attempt=2, status=Status.PASSED, actor="new", summary={"total": 1})
    assert state(execution_id)[:2] == ("PASSED", 2)
    assert transition_rows(execution_id) == [
        (None, "QUEUED", 0),
        ("QUEUED", "RUNNING", 1),
        ("RUNNING", "QUEUED", 1),
        ("QUEUED", "RUNNING", 2),
        ("RUNNING", "PASSED", 2),
    ]


def test_a_stale_transition_raises_and_writes_no_row(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    assert claim_in_own_session(execution_id, "w1") == 1
    before = transition_rows(execution_id)
    with new_session() as s, s.begin(), pytest.raises(InvalidTransition, match="attempt 1, not 7"):
        transition(s, execution_id, Status.PASSED, attempt=7, actor="stale")
    assert transition_rows(execution_id) == before
    assert state(execution_id)[0] == "RUNNING"


@pytest.mark.parametrize(
    ("setup", "to"),
    [
        ([], Status.PASSED),  # QUEUED -> PASSED skips RUNNING
        ([], Status.RETRYING),
        ([Status.CANCELLED], Status.QUEUED),  # nothing leaves a terminal status
        ([Status.RUNNING, Status.PASSED], Status.RUNNING),
        ([Status.RUNNING, Status.FAILED], Status.PASSED),
    ],
)
def test_a_disallowed_transition_raises_and_writes_no_row(
    queued: Callable[..., uuid.UUID], session: Session, setup: list[Status], to: Status
) -> None:
    execution_id = queued()
    with session.begin():
        for status in setup:
            transition(session, execution_id, status, actor="test")
    before = transition_rows(execution_id)
    status_before = state(execution_id)[0]
    with session.begin(), pytest.raises(InvalidTransition, match="not allowed"):
        transition(session, execution_id, to, actor="test")
    assert transition_rows(execution_id) == before
    assert state(execution_id)[0] == status_before


def test_steps_written_in_batches_and_with_the_result_are_numbered_in_order(
    queued: Callable[..., uuid.UUID],
) -> None:
    """The worker's heartbeat writes finished steps a batch at a time and the last ones go with the
    final status: the rows and their events come out exactly as if written one by one."""
    execution_id = queued()
    assert claim_in_own_session(execution_id, "w1") == 1
    with new_session() as s, s.begin():
        assert (
            renew_lease(s, execution_id, attempt=1, lease_s=LEASE_S, steps=[step(1), step(2), step(3)])
            is Lease.HELD
        )
        assert renew_lease(s, execution_id, attempt=1, lease_s=LEASE_S) is Lease.HELD  # a renewal only
    with new_session() as s, s.begin():
        done = finish(
            s, execution_id, attempt=1, status=Status.PASSED, actor="w1", summary={"total": 5},
            steps=[step(4), step(5)],
        )  # fmt: skip
        assert done
    with new_session() as s:
        seqs = s.scalars(
            select(StepTrace.seq).where(StepTrace.execution_id == execution_id).order_by(StepTrace.id)
        ).all()
        assert seqs == [1, 2, 3, 4, 5]
        events = list_events(s, root_id=execution_id, after=0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
        kinds = [(e.type, e.data.get("to") or e.data.get("seq")) for e in events]
        assert kinds == [
            ("transition", "QUEUED"), ("transition", "RUNNING"),
            ("step", 1), ("step", 2), ("step", 3), ("step", 4), ("step", 5),
            ("transition", "PASSED"),
        ]  # fmt: skip
        assert s.scalar(select(Execution.event_seq).where(Execution.id == execution_id)) == len(events)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_a_suite_members_transitions_and_steps_are_numbered_in_the_suites_stream(
    database: str, request: pytest.FixtureRequest
) -> None:
    """A member's events take their numbers from its root (the suite): its claim, its last steps
    written with its result and the result itself come out in order, without gaps, each
    transition event naming its transition row. PostgreSQL writes a transition in one statement,
    SQLite in three: both number the same way."""
    session = request.getfixturevalue("session" if database == "postgresql" else "sqlite_session")
    suite_id, (member, _) = make_suite_run(session, 2)
    assert claim_in_own_session(member, "w1") == 1
    with new_session() as s, s.begin():
        assert finish(
            s, member, attempt=1, status=Status.FAILED, actor="w1", summary={"total": 2},
            steps=[step(1), StepRecord(seq=2, name="step 2", status="failed")],
        )  # fmt: skip
    with new_session() as s:
        events = list_events(s, root_id=suite_id, after=0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        mine = [(e.type, e.data.get("to") or e.data.get("seq")) for e in events if e.execution_id == member]
        assert mine == [
            ("transition", "QUEUED"), ("transition", "RUNNING"),
            ("step", 1), ("step", 2), ("transition", "FAILED"),
        ]  # fmt: skip
        rows = s.scalars(select(ExecutionTransition).where(ExecutionTransition.execution_id == member)).all()
        by_id = {row.id: row for row in rows}
        for event in events:
            if event.type == "transition" and event.execution_id == member:
                row = by_id[event.data["transition_id"]]
                assert (row.to_status, row.attempt) == (event.data["to"], event.data["attempt"])
                assert event.data["at"] == row.at.isoformat()
        assert s.scalar(select(Execution.event_seq).where(Execution.id == suite_id)) == len(events)
        assert s.scalar(select(Execution.status).where(Execution.id == suite_id)) == "RUNNING"


def test_a_lost_attempt_writes_none_of_its_pending_steps_with_its_result(
    queued: Callable[..., uuid.UUID],
) -> None:
    execution_id = queued()
    assert claim_in_own_session(execution_id, "old") == 1
    with new_session() as s, s.begin():
        transition(
            s, execution_id, Status.QUEUED, from_=Status.RUNNING, attempt=1, actor="test", reason="lost"
        )
    assert claim_in_own_session(execution_id, "new") == 2
    with new_session() as s, s.begin():
        assert not finish(
            s, execution_id, attempt=1, status=Status.PASSED, actor="old", summary={}, steps=[step(1)]
        )
        assert renew_lease(s, execution_id, attempt=1, lease_s=LEASE_S, steps=[step(1)]) is Lease.LOST
    assert step_count(execution_id) == 0
    assert state(execution_id)[:2] == ("RUNNING", 2)


def test_the_lease_renewal_tells_the_worker_about_a_cancel_request(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    assert claim_in_own_session(execution_id, "w1") == 1
    with new_session() as s, s.begin():
        cancel(s, execution_id, actor="someone")
    with new_session() as s, s.begin():
        assert (
            renew_lease(s, execution_id, attempt=1, lease_s=LEASE_S, steps=[step(1)])
            is Lease.CANCEL_REQUESTED
        )
    assert step_count(execution_id) == 1  # what finished before the request is kept
