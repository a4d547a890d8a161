"""Sharded executions on PostgreSQL: the plan and its shards in one transaction, fenced takes,
concurrent stealing that never hands a test out twice, recovery that keeps finished steps, and the
parent settling once from its shards."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, StepStatus, TriggerKind
from anvil.domain.shards import expected_durations, plan
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from anvil.domain.windows import days
from db.attempts import finish
from db.models import Execution, ShardTest, StepTrace, TestCase
from db.scopes import Scope
from db.session import new_session
from db.shard_runs import PlanRefused, create_shards
from db.shard_tests import resume, take
from db.stats import stats
from tests.helpers import claim_attempt, create_execution, write_step

KEYS = [f"tests/test_x.py::test_{i}" for i in range(40)]


def pytest_case(session: Session) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(), name=f"py-{uuid.uuid4().hex[:6]}", kind="pytest",
            spec={"workspace": "demo", "args": [], "shards": 2}, tags=[], timeout_s=60,
        )  # fmt: skip
        session.add(case)
    return case


def planned_parent(session: Session, count: int = 2) -> tuple[uuid.UUID, int]:
    """A claimed parent execution of a pytest case: (its id, the attempt holding it)."""
    case = pytest_case(session)
    with session.begin():
        parent = create_execution(session, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
                                  requested_by=None)  # fmt: skip
    with session.begin():
        attempt = claim_attempt(session, parent.id, worker="w1", lease_s=30)
    assert attempt is not None
    return parent.id, attempt


def split(session: Session, parent_id: uuid.UUID, attempt: int, count: int = 2) -> list[uuid.UUID]:
    durations = expected_durations(KEYS, {})
    with session.begin():
        items = create_shards(
            session, parent_id, attempt=attempt, shards=plan(KEYS, {}, count), durations=durations,
            requested=count, actor="test",
        )  # fmt: skip
    return [shard_id for shard_id, _ in items]


def claim(session: Session, shard_id: uuid.UUID) -> int:
    with session.begin():
        attempt = claim_attempt(session, shard_id, worker="w2", lease_s=30)
    assert attempt is not None
    return attempt


def index_of(shard_id: uuid.UUID) -> int:
    with new_session() as s:
        selection: dict[str, Any] = s.scalars(
            select(Execution.selection).where(Execution.id == shard_id)
        ).one()
    return int(selection["shard"]["index"])


def test_the_plan_and_its_shards_are_one_transaction(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    shard_ids = split(session, parent_id, attempt)
    with session.begin():
        parent = session.get_one(Execution, parent_id)
        shards = session.scalars(select(Execution).where(Execution.parent_execution_id == parent_id)).all()
        rows = session.scalar(
            select(func.count()).select_from(ShardTest).where(ShardTest.parent_execution_id == parent_id)
        )
    assert parent.status == "RUNNING" and parent.lease_expires_at is None  # no worker holds it now
    assert (
        parent.shard_plan is not None and parent.shard_plan["count"] == 2 and parent.shard_plan["tests"] == 40
    )
    assert sorted(s.id for s in shards) == sorted(shard_ids)
    assert {s.trigger_kind for s in shards} == {"shard"} and {s.status for s in shards} == {"QUEUED"}
    assert {s.root_execution_id for s in shards} == {parent_id}
    assert rows == 40

    # A refused plan writes nothing: a second plan by the same (or a stale) attempt fails whole.
    with pytest.raises(PlanRefused), session.begin():
        create_shards(session, parent_id, attempt=attempt + 1, shards=plan(KEYS, {}, 2),
                      durations=expected_durations(KEYS, {}), requested=2, actor="test")  # fmt: skip
    with session.begin():
        assert session.scalar(select(func.count()).where(Execution.parent_execution_id == parent_id)) == 2


def test_a_plan_is_refused_once_a_cancel_came(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    with session.begin():
        session.get_one(Execution, parent_id).cancel_requested_at = func.now()
    with pytest.raises(PlanRefused) as refused:
        split(session, parent_id, attempt)
    assert refused.value.cancelled
    with session.begin():
        assert session.scalar(select(func.count()).where(Execution.parent_execution_id == parent_id)) == 0


def test_takes_are_fenced_by_the_shards_attempt(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    shard_id = split(session, parent_id, attempt)[0]
    shard_attempt = claim(session, shard_id)
    with session.begin():
        assert take(session, parent_id, shard_id=shard_id, attempt=shard_attempt + 1, index=1) == []
        got = take(session, parent_id, shard_id=shard_id, attempt=shard_attempt, index=1)
    assert got and all(key in KEYS for key in got)


def test_two_shards_stealing_at_once_never_take_a_test_twice(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    shard_ids = split(session, parent_id, attempt)
    holders = [(shard_id, claim(session, shard_id), index_of(shard_id)) for shard_id in shard_ids]
    taken: dict[uuid.UUID, list[str]] = {shard_id: [] for shard_id in shard_ids}
    start = threading.Barrier(len(holders))

    def drain(shard_id: uuid.UUID, held: int, index: int) -> None:
        start.wait()
        while True:
            with new_session() as s, s.begin():
                got = take(s, parent_id, shard_id=shard_id, attempt=held, index=index)
            if not got:
                return
            taken[shard_id].extend(got)

    threads = [threading.Thread(target=drain, args=holder) for holder in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counted = Counter(key for keys in taken.values() for key in keys)
    assert sorted(counted) == sorted(KEYS) and set(counted.values()) == {1}
    with session.begin():
        owners = {key: by for key, by in session.execute(select(ShardTest.key, ShardTest.taken_by))}
    assert all(owners[key] == shard_id for shard_id, keys in taken.items() for key in keys)


def test_a_recovered_shard_keeps_its_finished_steps_and_gives_back_the_rest(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    shard_id = split(session, parent_id, attempt)[0]
    first = claim(session, shard_id)
    with session.begin():
        got = take(session, parent_id, shard_id=shard_id, attempt=first, index=1)
    done = got[0]
    with session.begin():
        assert write_step(session, shard_id, attempt=first, lease_s=30,
                          step=StepRecord(seq=1, name=done, status=StepStatus.PASSED))  # fmt: skip
    # The worker dies; the lease sweep re-queues the shard, and another worker claims it.
    with session.begin():
        shard = session.get_one(Execution, shard_id)
        shard.status, shard.lease_expires_at = "QUEUED", None
    second = claim(session, shard_id)
    with session.begin():
        carried = resume(session, shard_id, attempt=second)
    assert carried is not None and [step["name"] for step in carried] == [done]
    with session.begin():
        names = session.scalars(select(StepTrace.name).where(StepTrace.execution_id == shard_id,
                                                             StepTrace.attempt == second)).all()  # fmt: skip
        still_mine = session.scalars(select(ShardTest.key).where(ShardTest.taken_by == shard_id)).all()
    assert names == [done] and still_mine == [done]  # the unfinished ones went back to the plan
    with session.begin():
        again = take(session, parent_id, shard_id=shard_id, attempt=second, index=1)
    assert done not in again and set(got[1:]) <= set(again) | set(KEYS)


def test_a_recovered_bdd_shard_gives_back_everything_it_took_and_carries_no_step(session: Session) -> None:
    """A BDD shard's steps are Gherkin steps, not scenarios: a scenario half run cannot be kept, so
    its next attempt runs again every scenario its earlier attempt took (no step carried over)."""
    parent_id, attempt = planned_parent(session)
    shard_id = split(session, parent_id, attempt)[0]
    first = claim(session, shard_id)
    with session.begin():
        got = take(session, parent_id, shard_id=shard_id, attempt=first, index=1, trip_s=5.0, most=100)
        assert write_step(session, shard_id, attempt=first, lease_s=30,
                          step=StepRecord(seq=1, name="Given a step", status=StepStatus.PASSED))  # fmt: skip
    assert len(got) == 5  # 5 s of planned time at 1 s each: one behave run's batch
    with session.begin():
        shard = session.get_one(Execution, shard_id)
        shard.status, shard.lease_expires_at = "QUEUED", None
    second = claim(session, shard_id)
    with session.begin():
        assert resume(session, shard_id, attempt=second, carry=False) == []
        still_mine = session.scalars(select(ShardTest.key).where(ShardTest.taken_by == shard_id)).all()
        copied = session.scalar(
            select(func.count()).where(StepTrace.execution_id == shard_id, StepTrace.attempt == second)
        )
    assert still_mine == [] and copied == 0
    with session.begin():
        again = take(session, parent_id, shard_id=shard_id, attempt=second, index=1, trip_s=5.0, most=100)
    assert again == got


def test_the_parent_finishes_once_with_the_counts_of_every_shard(session: Session) -> None:
    parent_id, attempt = planned_parent(session)
    shard_ids = split(session, parent_id, attempt)
    for shard_id in shard_ids:
        held = claim(session, shard_id)
        with session.begin():
            keys = take(session, parent_id, shard_id=shard_id, attempt=held, index=index_of(shard_id))
            while True:
                more = take(session, parent_id, shard_id=shard_id, attempt=held, index=index_of(shard_id))
                if not more:
                    break
                keys += more
        steps = [StepRecord(seq=i + 1, name=k, status=StepStatus.PASSED) for i, k in enumerate(keys)]
        with session.begin():
            assert finish(session, shard_id, attempt=held, status=Status.PASSED, actor="w",
                          summary={"total": len(keys), "passed": len(keys)}, steps=steps)  # fmt: skip
    with session.begin():
        parent = session.get_one(Execution, parent_id)
    assert parent.status == "PASSED"
    assert parent.summary["total"] == 40 and parent.summary["passed"] == 40
    assert parent.summary["shards"]["done"] == 2
    # Statistics count the run once (each shard recorded its own tests), and every test once.
    with session.begin():
        assert parent.test_case_id is not None
        figures = stats(
            session, scope=Scope(case_ids=(parent.test_case_id,)), window=days(1), now=datetime.now(UTC)
        )
    assert (figures.runs, figures.results, figures.passed) == (1, 40, 40)
