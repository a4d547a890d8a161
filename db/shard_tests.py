"""The tests of a sharded execution's plan, handed out to its shards (work stealing).

Every test of the plan is a row, planned for one shard. A shard's worker takes its own tests a few
at a time, in collection order; once none is left it steals from the end of the list of the shard
with the most planned time still untaken. Taking is one UPDATE of rows picked with ``FOR UPDATE
SKIP LOCKED``: two shards never take the same test, and neither waits for the other. The taking
shard's execution must still be RUNNING at the taker's attempt (fenced like every write of an
attempt). A test taken is run by that shard alone; a later attempt of the same shard (after its
worker died) gives back what its earlier attempts took and did not finish.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Exists

from anvil.domain.shards import refit
from anvil.domain.states import Status
from db.models import Execution, ShardTest, StepTrace
from db.types import utcnow

TESTS = cast(Table, ShardTest.__table__)
# At most this many tests per trip to the database (a thief: half as many). Quick tests are most
# of a real suite: at 16, a shard stealing attrs's millisecond tests waited on its trips.
BATCH = 32
TRIP_S = 0.25  # a shard's own tests taken per trip: up to this much planned time


def store_plan(session: Session, parent_id: uuid.UUID, tests: Sequence[tuple[str, int, float]]) -> None:
    """The plan's tests in collection order, each as (key, its shard's 0-based index, expected s)."""
    rows = [
        dict(parent_execution_id=parent_id, key=key, position=i, shard=index + 1, planned_s=seconds)
        for i, (key, index, seconds) in enumerate(tests)
    ]
    if rows:
        session.execute(insert(TESTS), rows)


def confirm_plan(
    session: Session, parent_id: uuid.UUID, collected: Sequence[str], *, shard_id: uuid.UUID, attempt: int
) -> bool:
    """Fit a plan made from an earlier run's test list to the tests a shard's pytest collected now
    (the first shard to ask does it; its collection is the run's test list): tests gone are
    dropped, new ones planned for the least loaded shards. False when the plan was already
    confirmed, or ``attempt`` no longer holds shard ``shard_id`` (fenced like every write of an
    attempt). Before this, no shard takes a test: each confirms at its first ask."""
    if not session.scalar(select(_holds(shard_id, attempt))):
        return False
    parent = session.execute(
        select(Execution).where(Execution.id == parent_id).with_for_update()
    ).scalar_one()
    plan = dict(parent.shard_plan or {})
    if plan.get("confirmed", True):
        return False
    c = TESTS.c
    planned = {
        key: (shard - 1, seconds)
        for key, shard, seconds in session.execute(
            select(c.key, c.shard, c.planned_s).where(c.parent_execution_id == parent_id)
        )
    }
    change = refit(planned, collected, plan["count"])
    if change.gone or change.added:
        # Nothing is taken yet: the rows are written again, in the order collected now.
        planned.update((key, (index, seconds)) for key, index, seconds in change.added)
        session.execute(delete(TESTS).where(c.parent_execution_id == parent_id))
        keys = list(dict.fromkeys(collected))
        store_plan(session, parent_id, [(key, planned[key][0], planned[key][1]) for key in keys])
    per_shard = {
        shard: (int(count), float(seconds or 0.0))
        for shard, count, seconds in session.execute(
            select(c.shard, func.count(), func.sum(c.planned_s))
            .where(c.parent_execution_id == parent_id)
            .group_by(c.shard)
        )
    }
    plan["shards"] = [
        {
            **entry,
            "tests": per_shard.get(entry["index"], (0, 0.0))[0],
            "planned_s": round(per_shard.get(entry["index"], (0, 0.0))[1], 3),
        }
        for entry in plan["shards"]
    ]
    plan.update(
        confirmed=True,
        tests=sum(count for count, _ in per_shard.values()),
        added=len(change.added),
        gone=len(change.gone),
    )
    parent.shard_plan = plan
    return True


def plan_keys(session: Session, parent_id: uuid.UUID) -> list[str]:
    """Every test of the plan, in collection order."""
    c = TESTS.c
    return list(session.scalars(select(c.key).where(c.parent_execution_id == parent_id).order_by(c.position)))


def take(
    session: Session,
    parent_id: uuid.UUID,
    *,
    shard_id: uuid.UUID,
    attempt: int,
    index: int,
    at_least: int = 1,
    trip_s: float = TRIP_S,
    most: int = BATCH,
) -> list[str]:
    """The next tests for shard ``index`` (execution ``shard_id`` at ``attempt``) to run: some of
    its own, else stolen from the shard with the most planned time left; none when all are taken
    (or the attempt no longer holds the shard). ``at_least``: as many as the shard, by the pace it
    sees, runs in a trip's time (the plan's times are guesses where there is no history);
    ``trip_s`` and ``most``: how much planned time, and how many tests at most, one trip takes."""
    c = TESTS.c
    mine = _pick(session, parent_id, shard=index, newest=False, most=most)
    if mine:
        # Its next tests up to TRIP_S of planned time: long tests one by one (the others may still
        # steal them), short ones a batch per trip.
        return _mark(session, shard_id, attempt, _up_to(mine, trip_s, at_least))
    victim = session.execute(
        select(c.shard, func.sum(c.planned_s))
        .where(c.parent_execution_id == parent_id, c.taken_by.is_(None))
        .group_by(c.shard)
        .order_by(func.sum(c.planned_s).desc(), c.shard)
        .limit(1)
    ).first()
    if victim is None:
        return []
    # From the end of its list (it works from the start), and no more than a trip's worth: a
    # stolen test waiting behind a long one could not be stolen back.
    theirs = _pick(session, parent_id, shard=victim[0], newest=True, most=most)
    return _mark(session, shard_id, attempt, _up_to(theirs, trip_s, min(at_least, (len(theirs) + 1) // 2)))


def _pick(
    session: Session, parent_id: uuid.UUID, *, shard: int, newest: bool, most: int
) -> list[tuple[int, float]]:
    """(id, planned_s) of up to ``most`` untaken tests of ``shard``, locked; rows another shard is
    taking right now are skipped, not waited for."""
    c = TESTS.c
    rows = session.execute(
        select(c.id, c.planned_s)
        .where(c.parent_execution_id == parent_id, c.shard == shard, c.taken_by.is_(None))
        .order_by(c.position.desc() if newest else c.position)
        .limit(most)
        .with_for_update(skip_locked=True)
    ).all()
    return [(row_id, planned) for row_id, planned in rows]


def _up_to(rows: list[tuple[int, float]], seconds: float, at_least: int = 1) -> list[int]:
    """The first rows whose planned time adds up to ``seconds`` (at least ``at_least``, and one)."""
    chosen: list[int] = []
    total = 0.0
    for row_id, planned in rows:
        if len(chosen) >= max(at_least, 1) and total + planned > seconds:
            break
        chosen.append(row_id)
        total += planned
    return chosen


def _mark(session: Session, shard_id: uuid.UUID, attempt: int, ids: list[int]) -> list[str]:
    """Mark the rows taken by the shard while ``attempt`` holds it; their keys in plan order."""
    if not ids:
        return []
    c = TESTS.c
    rows = session.execute(
        update(TESTS)
        .where(c.id.in_(ids), c.taken_by.is_(None), _holds(shard_id, attempt))
        .values(taken_by=shard_id, taken_attempt=attempt, taken_at=utcnow())
        .returning(c.key, c.position)
    ).all()
    return [key for key, _ in sorted(rows, key=lambda row: row[1])]


def _holds(shard_id: uuid.UUID, attempt: int) -> Exists:
    """``attempt`` still holds shard ``shard_id`` (RUNNING at that attempt)."""
    e = Execution
    return exists().where(e.id == shard_id, e.attempt == attempt, e.status == Status.RUNNING.value)


def give_back_unfinished(session: Session, shard_id: uuid.UUID, *, done: Sequence[str]) -> int:
    """Earlier attempts' takings that did not finish (no step recorded) go back to be taken again."""
    c = TESTS.c
    where = [c.taken_by == shard_id]
    if done:
        where.append(c.key.not_in(list(done)))
    result = session.execute(
        update(TESTS).where(*where).values(taken_by=None, taken_attempt=None, taken_at=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def give_back(session: Session, shard_id: uuid.UUID, *, keys: Sequence[str]) -> None:
    """Tests the shard took but will not run go back to be taken by another."""
    c = TESTS.c
    session.execute(
        update(TESTS)
        .where(c.taken_by == shard_id, c.key.in_(list(keys)))
        .values(taken_by=None, taken_attempt=None, taken_at=None)
    )


def carry_finished_steps(session: Session, execution_id: uuid.UUID, *, attempt: int) -> list[dict[str, Any]]:
    """Copy the steps of the execution's latest earlier attempt into ``attempt`` (the tests they
    record finished: they are not run again) and return them (name, status, details)."""
    s = StepTrace
    previous = session.scalar(
        select(func.max(s.attempt)).where(s.execution_id == execution_id, s.attempt < attempt)
    )
    if previous is None:
        return []
    columns = (
        "seq", "name", "keyword", "status", "started_at", "finished_at", "duration_s", "output",
        "output_truncated", "error", "details",
    )  # fmt: skip
    table = cast(Table, StepTrace.__table__)
    rows = session.execute(
        select(*(table.c[name] for name in columns))
        .where(table.c.execution_id == execution_id, table.c.attempt == previous)
        .order_by(table.c.seq)
    ).all()
    already = session.scalar(
        select(func.count()).where(and_(table.c.execution_id == execution_id, table.c.attempt == attempt))
    )
    if rows and not already:
        session.execute(
            insert(table),
            [
                {"execution_id": execution_id, "attempt": attempt, **row._asdict(), "recorded_at": utcnow()}
                for row in rows
            ],
        )
    return [{"name": row.name, "status": row.status, "details": row.details or {}} for row in rows]


def resume(
    session: Session, shard_id: uuid.UUID, *, attempt: int, carry: bool = True
) -> list[dict[str, Any]] | None:
    """Start ``attempt`` of a shard that takes its tests from the plan: the steps its earlier
    attempts finished carried over (returned), what they took and did not finish given back.
    None when the attempt no longer holds the shard."""
    row = session.execute(
        select(Execution.status, Execution.attempt).where(Execution.id == shard_id).with_for_update()
    ).one_or_none()
    if row is None or row.attempt != attempt or row.status != Status.RUNNING.value:
        return None
    # A BDD shard's steps are Gherkin steps, not its scenarios: it runs what it took again.
    carried = carry_finished_steps(session, shard_id, attempt=attempt) if carry and attempt > 1 else []
    give_back_unfinished(session, shard_id, done=[step["name"] for step in carried])
    return carried


def narrow_selection(session: Session, shard_id: uuid.UUID, *, attempt: int, tests: Sequence[str]) -> None:
    """A shard that took its tests as it went ends with the tests it ran as its selection, fixed:
    a retry of it runs those (fenced: only while ``attempt`` holds it)."""
    row = session.execute(
        select(Execution.selection).where(
            Execution.id == shard_id, Execution.attempt == attempt, Execution.status == Status.RUNNING.value
        )
    ).one_or_none()
    if row is None or row.selection is None:
        return
    shard = {**row.selection.get("shard", {}), "steal": False}
    selection = {**row.selection, "tests": list(tests), "shard": shard}
    session.execute(
        update(Execution)
        .where(Execution.id == shard_id, Execution.attempt == attempt)
        .values(selection=selection)
    )


def taken_keys(session: Session, shard_id: uuid.UUID) -> list[str]:
    c = TESTS.c
    return list(session.scalars(select(c.key).where(c.taken_by == shard_id).order_by(c.position)))


def untaken(session: Session, parent_id: uuid.UUID) -> int:
    """Tests of the plan no shard took (each shard's worker stopped taking: an error it reported)."""
    c = TESTS.c
    found = session.scalar(
        select(func.count()).where(c.parent_execution_id == parent_id, c.taken_by.is_(None))
    )
    return int(found or 0)
