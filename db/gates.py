"""Judging a finished suite or case run by its quality gate (anvil/domain/gates.py).

db/suite_runs.settle calls ``judge_run`` right after a suite's or sharded case's final transition,
and db/reactions.py calls ``judge_case_runs`` for a case run alone once its results are recorded,
so the verdict is committed with the run's result (and the test results it reads, recorded
earlier in the same reaction) or not at all. The rules were frozen into the run's snapshot when it
was submitted: a suite's under ``gate``, a case's in its spec.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, aliased

from anvil.domain.enums import TriggerKind
from anvil.domain.gates import ResultRow, evaluate, failing_tests
from anvil.domain.states import Status
from db.models import Execution, Test, TestResult

SUITE = "suite"  # a suite execution's snapshot kind (db/suite_runs.py, which imports this module)
# A previous run counts when it reached a result (a case run's first execution is RETRYING when a
# retry ended it): a cancelled or aborted one says nothing.
JUDGED = tuple(s.value for s in (Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.RETRYING))


def gate_rules(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """The gate a run was submitted with: a suite's, or its case spec's (None: no gate)."""
    if snapshot.get("kind") == SUITE:
        return snapshot.get("gate") or None
    return (snapshot.get("spec") or {}).get("gate") or None


def judge_run(
    session: Session, execution_id: uuid.UUID, *, ended_at: datetime | None = None
) -> dict[str, Any] | None:
    """Evaluate and store the gate of a finished run (a root); returns the verdict, None without a gate.

    ``ended_at``: when the run ended, if not its own finished_at (a case whose retry ended it).
    """
    run = session.execute(
        select(Execution).where(Execution.id == execution_id).execution_options(populate_existing=True)
    ).scalar_one()
    rules = gate_rules(run.case_snapshot or {})
    if rules is None or run.root_execution_id != run.id:
        return None
    previous = previous_run(session, run)
    end = ended_at or run.finished_at
    duration = (end - (run.started_at or run.created_at)).total_seconds() if end else None
    verdict = evaluate(
        rules,
        result_rows(session, run.id),
        duration_s=duration,
        previous_failing=failing_tests(result_rows(session, previous)) if previous else None,
        previous_execution_id=str(previous) if previous else None,
    )
    session.execute(update(Execution).where(Execution.id == run.id).values(gate=verdict))
    return verdict


def judge_case_runs(session: Session, execution_ids: Sequence[uuid.UUID]) -> None:
    """Judge the case runs (not split into shards) that ``execution_ids`` ended: a case execution
    with a gate that reached its result, or the retry that ended its chain. A RETRYING one is not
    over yet; a suite's member or a shard is judged with its suite or sharded case (settle)."""
    if not execution_ids:
        return
    ended, root = Execution, aliased(Execution)
    # On every finish of a case: read the gate alone, not the whole snapshot with its spec.
    rows = session.execute(
        select(root.id, root.case_snapshot["spec"]["gate"], ended.finished_at)
        .join(root, root.id == ended.root_execution_id)
        .where(
            ended.id.in_(list(dict.fromkeys(execution_ids))),
            ended.status != Status.RETRYING.value,
            root.test_case_id.is_not(None),  # not a suite's member
            root.shard_plan.is_(None),  # not a shard, nor a sharded case
        )
        .order_by(ended.finished_at, ended.id)
    ).all()
    for root_id, gate, finished_at in rows:
        if gate:
            judge_run(session, root_id, ended_at=finished_at)


def previous_run(session: Session, run: Execution) -> uuid.UUID | None:
    """The latest earlier run of the same suite (or case) on the same branch that reached a result."""
    e = Execution
    same = (
        [e.test_suite_id == run.test_suite_id, e.test_case_id.is_(None)]
        if run.test_case_id is None
        else [e.test_case_id == run.test_case_id]
    )
    return session.scalars(
        select(e.id)
        .where(
            *same,
            e.root_execution_id == e.id,
            e.id != run.id,
            e.branch.is_not_distinct_from(run.branch),
            e.status.in_(JUDGED),
            e.created_at < run.created_at,
        )
        .order_by(e.created_at.desc(), e.id.desc())
        .limit(1)
    ).first()


def result_rows(session: Session, root_id: uuid.UUID) -> list[ResultRow]:
    """The test results of a run: a case run alone, its own and its retries'; a suite's, its
    children's (and, of a sharded member, its shards'); a sharded case's, its shards'; with their
    retries, never a follow-up's (repair, agent)."""
    r = TestResult
    alone = session.execute(
        select(Execution.test_case_id.is_not(None) & Execution.shard_plan.is_(None)).where(
            Execution.id == root_id
        )
    ).scalar_one()
    if alone:
        where = [r.root_execution_id == root_id, or_(r.execution_id == root_id, r.retry_index > 0)]
    else:
        sharded = session.scalars(
            select(Execution.id).where(
                Execution.root_execution_id == root_id, Execution.shard_plan.is_not(None)
            )
        ).all()
        trees = [root_id, *sharded]
        where = [
            r.root_execution_id.in_(trees),
            r.execution_id.not_in(trees),
            or_(r.trigger_kind.in_([TriggerKind.CHILD.value, TriggerKind.SHARD.value]), r.retry_index > 0),
        ]
    rows = session.execute(
        select(r.test_id, Test.name, r.status, r.quarantined, r.retry_index, r.id)
        .join(Test, Test.id == r.test_id)
        .where(*where)
    )
    return [ResultRow(*row) for row in rows]
