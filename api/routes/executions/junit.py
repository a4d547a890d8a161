"""``GET /api/v1/executions/{id}/junit.xml``: the JUnit XML report of a case or a suite execution."""

from __future__ import annotations

import uuid
from collections import defaultdict

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from api.deps import SessionDep, Viewer
from api.junit import junit_xml
from db.executions import get_execution
from db.models import Execution, StepTrace
from db.shard_runs import shard_steps

router = APIRouter()


@router.get(
    "/{execution_id}/junit.xml",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "JUnit XML"}},
)
def get_junit(execution_id: uuid.UUID, _: Viewer, session: SessionDep) -> Response:
    """One testsuite per case execution (a suite: each member's last attempt; a case split into
    shards: one for all their tests), one testcase per test.

    Available at any time: while the execution runs, the report holds what finished so far.
    """
    execution = get_execution(session, execution_id)
    runs = case_runs(session, execution)
    name = str((execution.case_snapshot or {}).get("name") or execution.id)
    return Response(junit_xml(name=name, runs=runs), media_type="application/xml")


def case_runs(session: Session, execution: Execution) -> list[tuple[Execution, list[StepTrace]]]:
    """The case executions of the report with the steps of their latest attempt, in two queries."""
    if execution.test_case_id is not None:
        members = [execution]
    else:
        # A suite: its members' last attempts (a RETRYING one was superseded by its retry).
        members = list(
            session.scalars(
                select(Execution)
                .where(
                    Execution.root_execution_id == execution.id,
                    Execution.id != execution.id,
                    Execution.test_case_id.is_not(None),
                    Execution.status != Status.RETRYING.value,
                )
                # Members share one creation time: name order makes the report stable.
                .order_by(Execution.created_at, Execution.case_snapshot["name"].as_string(), Execution.id)
            )
        )
    steps: dict[uuid.UUID, list[StepTrace]] = defaultdict(list)
    ids = [member.id for member in members]
    for start in range(0, len(ids), 1000):  # bounded IN lists for very large suites
        for step in session.scalars(
            select(StepTrace)
            .where(StepTrace.execution_id.in_(ids[start : start + 1000]))
            .order_by(StepTrace.execution_id, StepTrace.attempt, StepTrace.seq)
        ):
            steps[step.execution_id].append(step)
    runs = []
    for member in members:
        if member.shard_plan is not None:
            # One testsuite for a case split into shards, whichever shard ran each of its tests.
            runs.append((member, shard_steps(session, member.id)))
            continue
        rows = steps.get(member.id, [])
        latest = max((row.attempt for row in rows), default=None)
        runs.append((member, [row for row in rows if row.attempt == latest]))
    return runs
