"""A sharded pytest run planned from the case's last test list, confirmed by its shards.

A run of a case whose last sharded run had the same spec and parameters starts from that run's
list (no serial collection); its first shard to collect fits the plan to the tests as they are now,
before any shard takes a test.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.shards import expected_durations, plan
from db.models import Execution, ShardTest, TestCase
from db.session import new_session
from db.shard_runs import create_shards, previous_tests
from db.shard_tests import confirm_plan, take
from tests.helpers import claim_attempt, create_execution
from tests.integration.test_shards import KEYS, claim, index_of, pytest_case


def run_of(session: Session, case: TestCase, **fields: Any) -> tuple[Execution, int]:
    with session.begin():
        parent = create_execution(session, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
                                  requested_by=None, **fields)  # fmt: skip
    with session.begin():
        attempt = claim_attempt(session, parent.id, worker="w1", lease_s=30)
    assert attempt is not None
    return parent, attempt


def split(
    session: Session, parent: Execution, attempt: int, keys: list[str], listed_by: uuid.UUID | None = None
) -> list[uuid.UUID]:
    with session.begin():
        made = create_shards(
            session, parent.id, attempt=attempt, shards=plan(keys, {}, 2),
            durations=expected_durations(keys, {}), requested=2, actor="test", listed_by=listed_by,
        )  # fmt: skip
    return [shard_id for shard_id, _ in made]


def source_of(session: Session, parent: Execution) -> tuple[uuid.UUID, list[str]] | None:
    with session.begin():
        return previous_tests(
            session, session.get_one(Execution, parent.id), since=parent.created_at.replace(year=2000)
        )


def test_a_run_starts_from_the_latest_sharded_run_of_the_same_spec_whose_list_was_confirmed(
    session: Session,
) -> None:
    case = pytest_case(session)
    first, attempt = run_of(session, case)
    assert source_of(session, first) is None  # nothing before it: it collects first
    split(session, first, attempt, KEYS)

    second, attempt = run_of(session, case)
    assert source_of(session, second) == (first.id, KEYS)
    split(session, second, attempt, KEYS, listed_by=first.id)
    with session.begin():
        shard_plan = session.get_one(Execution, second.id).shard_plan
    assert shard_plan is not None and shard_plan["confirmed"] is False
    assert shard_plan["listed_by"] == str(first.id)

    # The second run's list is not confirmed yet (no shard collected): the first run's is used.
    third, _ = run_of(session, case)
    assert source_of(session, third) == (first.id, KEYS)

    # Other parameters, a selection of tests, or other arguments: collected anew.
    other_params, _ = run_of(session, case, params={"env": {"MODE": "slow"}})
    assert source_of(session, other_params) is None
    chosen, _ = run_of(session, case, selection={"whole": False, "tests": KEYS[:3]})
    assert source_of(session, chosen) is None
    with session.begin():
        session.get_one(TestCase, case.id).spec = {"workspace": "demo", "args": ["-k", "fast"], "shards": 2}
    other_args, _ = run_of(session, case)
    assert source_of(session, other_args) is None


def test_the_first_shard_to_collect_fits_the_plan_before_any_test_is_taken(session: Session) -> None:
    case = pytest_case(session)
    first, attempt = run_of(session, case)
    split(session, first, attempt, KEYS)
    second, attempt = run_of(session, case)
    shard_ids = split(session, second, attempt, KEYS, listed_by=first.id)
    held = {shard_id: claim(session, shard_id) for shard_id in shard_ids}

    # A stale attempt of a shard is fenced: it confirms nothing.
    with session.begin():
        assert (
            confirm_plan(session, second.id, KEYS[:5], shard_id=shard_ids[0], attempt=held[shard_ids[0]] + 1)
            is False
        )

    # Since the first run: three tests removed, two added in the middle of the list.
    collected = KEYS[:10] + ["tests/test_x.py::test_new_a", "tests/test_x.py::test_new_b"] + KEYS[13:]
    outcomes: list[bool] = []
    start = threading.Barrier(2)

    def confirm(keys: list[str], shard_id: uuid.UUID) -> None:
        start.wait()
        with new_session() as s, s.begin():
            outcomes.append(confirm_plan(s, second.id, keys, shard_id=shard_id, attempt=held[shard_id]))

    # Two shards confirm at once: exactly one fits the plan, the other finds it fitted.
    threads = [threading.Thread(target=confirm, args=(collected, shard_id)) for shard_id in shard_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [False, True]

    with session.begin():
        rows = session.execute(
            select(ShardTest.key, ShardTest.position, ShardTest.shard, ShardTest.planned_s)
            .where(ShardTest.parent_execution_id == second.id)
            .order_by(ShardTest.position)
        ).all()
        shard_plan = session.get_one(Execution, second.id).shard_plan
    assert [row.key for row in rows] == collected  # in the order collected now
    assert [row.position for row in rows] == list(range(len(collected)))
    assert {row.shard for row in rows} == {1, 2}
    new = [row for row in rows if "new" in row.key]
    assert {row.planned_s for row in new} == {1.0}  # the median of the planned times
    # Each to the shard with the least planned time. The plan gave runs of two neighbours in turn
    # (0-1 to shard 1, 2-3 to shard 2, ...): shard 2 lost tests 10 and 11, shard 1 test 12, so
    # the first new test goes to shard 2 and the second, at a tie, to shard 1.
    assert [row.shard for row in new] == [2, 1]
    assert shard_plan is not None
    assert shard_plan["confirmed"] is True and shard_plan["tests"] == 39
    assert (shard_plan["added"], shard_plan["gone"]) == (2, 3)
    assert sum(entry["tests"] for entry in shard_plan["shards"]) == 39
    assert sum(entry["planned_s"] for entry in shard_plan["shards"]) == 39.0

    # Confirmed once: a later shard's collection changes nothing.
    with session.begin():
        assert (
            confirm_plan(session, second.id, KEYS, shard_id=shard_ids[1], attempt=held[shard_ids[1]]) is False
        )
    # The shards take from the fitted plan: a removed test is never handed out, an added one is.
    handed: list[str] = []
    for shard_id in shard_ids:
        index = index_of(shard_id)
        while True:
            with session.begin():
                got = take(session, second.id, shard_id=shard_id, attempt=held[shard_id], index=index)
            if not got:
                break
            handed.extend(got)
    assert sorted(handed) == sorted(collected)

    # Now the second run's list is the latest confirmed one.
    third, _ = run_of(session, case)
    assert source_of(session, third) == (second.id, collected)
