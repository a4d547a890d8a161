"""Sharded case executions: the plan committed with its shards in one transaction, and the parent
settled from them.

A pytest or BDD case with ``shards`` is claimed by a worker, which collects its tests and plans
the split (anvil/domain/shards.py, workers/sharding.py). ``create_shards`` then, fenced by the
parent's attempt, inserts one child per shard (trigger kind ``shard``, through the one insert
path), stores the plan on the parent and drops the parent's lease: from then on no worker owns
the parent, which finishes like a suite — db/suite_runs.settle, once its shards have — with the
counts of all their tests (``parent_summary``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.selection import runs_whole
from anvil.domain.shards import Shard, imbalance
from anvil.domain.states import FINISHED, Status
from db.executions import NewExecution, Source, insert_executions, list_steps
from db.models import Execution, StepTrace, Test, TestResult
from db.selection import median_durations
from db.shard_tests import plan_keys, store_plan

SHARD = "shard"  # the key of a shard's own part of its selection


class PlanRefused(Exception):
    """The parent cannot be split now: its attempt lost the execution, or a cancel was requested."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancel requested" if cancelled else "the attempt no longer owns the execution")
        self.cancelled = cancelled


def recent_durations(session: Session, case_id: uuid.UUID, *, since: datetime) -> dict[str, float]:
    """Each known test of the case (by key): the median duration of its results since ``since``."""
    medians = median_durations(session, [TestResult.test_case_id == case_id, TestResult.recorded_at >= since])
    if not medians:
        return {}
    rows = session.execute(select(Test.id, Test.key).where(Test.test_case_id == case_id))
    keys = {test_id: key for test_id, key in rows}
    return {keys[test_id]: p50 for test_id, p50 in medians.items() if test_id in keys}


def previous_tests(
    session: Session, parent: Execution, *, since: datetime
) -> tuple[uuid.UUID, list[str]] | None:
    """The test list of the case's latest sharded pytest run since ``since`` that ran the same
    spec (but its shards and gate) and parameters whole, as its first shard collected it: a new
    run's plan can start from it, its shards confirming it as they collect (db/shard_tests
    .confirm_plan), instead of a serial collection first. None when there is no such run."""

    def same(snapshot: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (snapshot.get("spec") or {}).items() if k not in ("shards", "gate")}

    if not runs_whole(parent.selection):
        return None

    candidates = session.execute(
        select(
            Execution.id, Execution.case_snapshot, Execution.params, Execution.selection, Execution.shard_plan
        )
        .where(
            Execution.test_case_id == parent.test_case_id,
            Execution.created_at >= since,
            Execution.shard_plan.is_not(None),
            Execution.id != parent.id,
        )
        .order_by(Execution.created_at.desc())
        .limit(5)
    ).all()
    for row in candidates:
        plan = row.shard_plan or {}
        usable = plan.get("work_stealing") and plan.get("confirmed", True) and runs_whole(row.selection)
        if usable and row.params == parent.params and same(row.case_snapshot) == same(parent.case_snapshot):
            keys = plan_keys(session, row.id)
            return (row.id, keys) if keys else None
    return None


def create_shards(
    session: Session,
    parent_id: uuid.UUID,
    *,
    attempt: int,
    shards: Sequence[Shard],
    durations: Mapping[str, float],
    requested: int | str,
    actor: str,
    listed_by: uuid.UUID | None = None,
) -> list[tuple[uuid.UUID, str]]:
    """Insert the shards of a RUNNING parent held by ``attempt`` and store its plan; returns what to
    publish once committed. Raises PlanRefused when the attempt lost the parent or a cancel came.
    ``listed_by``: the earlier run whose test list the plan was made from (the shards collect
    and confirm it) instead of a collection of its own."""
    parent = session.execute(
        select(Execution)
        .where(Execution.id == parent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if parent is None or parent.status != Status.RUNNING.value or parent.attempt != attempt:
        raise PlanRefused(cancelled=False)
    if parent.cancel_requested_at is not None:
        raise PlanRefused(cancelled=True)
    base = parent.selection or {}
    count, collected = len(shards), len(durations)
    # Shards take their tests from the plan as they go (work stealing): pytest's one by one,
    # behave's (whose run is fixed when it starts) a batch per behave run.
    steal = parent.case_snapshot.get("kind") in ("pytest", "bdd")
    children = [
        NewExecution(
            snapshot=parent.case_snapshot,
            test_case_id=parent.test_case_id,
            priority=Priority(parent.priority),
            trigger_kind=TriggerKind.SHARD,
            requested_by=parent.requested_by,
            run_id=parent.run_id,
            params=parent.params,
            retry_policy=parent.retry_policy,
            parent_execution_id=parent.id,
            correlation_id=parent.correlation_id,
            root_execution_id=parent.id,
            source=Source.of(parent),
            # A shard is its parent's selection narrowed to its own tests; a retry copies it.
            selection={
                **{k: v for k, v in base.items() if k not in ("tests", "reasons", "whole", "counts")},
                "whole": False,
                "tests": list(shard.tests),
                "counts": {"selected": len(shard.tests), "total": collected},
                SHARD: {
                    "index": shard.index + 1,
                    "of": count,
                    "planned_s": shard.planned_s,
                    "steal": steal,
                    "collects": listed_by is not None,
                },
            },
            reason=f"shard {shard.index + 1} of {count}: "
            f"{len(shard.tests)} tests, {shard.planned_s:g}s planned",
        )
        for shard in shards
    ]
    insert_executions(session, children, actor=actor, max_attempts=parent.max_attempts)
    if steal:
        where = {key: shard.index for shard in shards for key in shard.tests}
        store_plan(session, parent.id, [(key, where[key], seconds) for key, seconds in durations.items()])
    parent.shard_plan = {
        "requested": requested,
        "work_stealing": steal,
        **({"confirmed": False, "listed_by": str(listed_by)} if listed_by is not None else {}),
        "count": count,
        "tests": collected,
        "shards": [
            {"index": s.index + 1, "execution_id": str(c.id), "tests": len(s.tests), "planned_s": s.planned_s}
            for s, c in zip(shards, children, strict=True)
        ],
    }
    parent.lease_expires_at = None  # no worker holds it now: the shards do the work
    parent.summary = parent_summary({Status.QUEUED.value: count}, [])
    return [(child.id, parent.priority) for child in children]


def parent_summary(counts: Mapping[str, int], shards: Sequence[Execution]) -> dict[str, Any]:
    """The parent's summary: the tests of all its shards counted together (the latest attempt of
    each shard), the shards by status, and how evenly they ended."""
    tests: dict[str, int] = {}
    runner: dict[str, int] = {}
    times = []
    for shard in shards:
        summary = shard.summary or {}
        for key, value in summary.items():
            if isinstance(value, int) and not isinstance(value, bool):
                tests[key] = tests.get(key, 0) + value
        for key, value in ((summary.get("pytest") or {}).get("counts") or {}).items():
            runner[key] = runner.get(key, 0) + int(value)
        # A shard whose tests were all taken by others ran nothing: it does not count in the spread.
        if _seconds(shard) is not None and shard.status != Status.SKIPPED.value:
            times.append(_seconds(shard) or 0.0)
    done = sum(n for status, n in counts.items() if Status(status) in FINISHED)
    found: dict[str, Any] = {
        "total": tests.pop("total", 0),
        **dict(sorted(tests.items())),
        "shards": {"total": sum(counts.values()), "done": done, "by_status": dict(sorted(counts.items()))},
    }
    if runner:
        found["pytest"] = {"counts": dict(sorted(runner.items()))}
    if times and done == sum(counts.values()):
        found["shards"]["seconds"] = [round(t, 3) for t in times]
        found["shards"]["imbalance"] = imbalance(times)
    return found


def plan_with_times(plan: dict[str, Any], shards: Sequence[Execution]) -> dict[str, Any]:
    """The plan with each shard's actual seconds (its latest attempt's) beside the planned ones."""
    actual = {(shard.selection or {}).get(SHARD, {}).get("index"): _seconds(shard) for shard in shards}
    return {**plan, "shards": [{**entry, "actual_s": actual.get(entry["index"])} for entry in plan["shards"]]}


def _seconds(shard: Execution) -> float | None:
    if shard.started_at is None or shard.finished_at is None or Status(shard.status) not in FINISHED:
        return None
    return round((shard.finished_at - shard.started_at).total_seconds(), 3)


def latest_shards(session: Session, parent_id: uuid.UUID) -> list[Execution]:
    """Each shard's latest attempt (a RETRYING shard is superseded by its retry)."""
    return list(
        session.scalars(
            select(Execution)
            .where(
                Execution.root_execution_id == parent_id,
                Execution.id != parent_id,
                Execution.status != Status.RETRYING.value,
            )
            .order_by(Execution.created_at, Execution.id)
        )
    )


def shard_steps(session: Session, parent_id: uuid.UUID) -> list[StepTrace]:
    """The steps of a sharded run: the latest attempt's of each shard, shard by shard."""
    return [step for shard in latest_shards(session, parent_id) for step in list_steps(session, shard.id)]
