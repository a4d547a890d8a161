"""Runs driven straight through the database for integration tests: cases with test outcomes,
suites submitted over the API, members claimed and finished as a worker would (tests/integration
test_gates.py, test_webhooks.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import StepStatus
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord, summarize
from db.attempts import finish
from db.models import Execution, TestCase
from db.reactions import react
from db.session import new_session
from tests.helpers import claim_attempt

SUITES = "/api/v1/test-suites"
EXECUTIONS = "/api/v1/executions"
Headers = dict[str, str]
# Outcomes of a member case's tests: node id -> passed / failed / error / skipped.
Outcomes = dict[str, str]


def pytest_case(session: Session, *, spec: dict[str, Any] | None = None) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(), name=f"py-{uuid.uuid4().hex[:6]}", kind="pytest",
            spec=spec or {"workspace": "demo", "args": ["tests"]}, tags=[], timeout_s=60,
        )  # fmt: skip
        session.add(case)
    return case


def steps(outcomes: Outcomes) -> list[StepRecord]:
    now = datetime.now(UTC)
    return [
        StepRecord(
            seq=i + 1,
            name=node,
            status=StepStatus(status),
            started_at=now,
            finished_at=now,
            duration_s=0.1,
            details={"kind": "test"},
        )  # fmt: skip
        for i, (node, status) in enumerate(outcomes.items())
    ]


def finish_with(s: Session, execution_id: uuid.UUID, attempt: int, outcomes: Outcomes) -> bool:
    status = Status.FAILED if {"failed", "error"} & set(outcomes.values()) else Status.PASSED
    done = steps(outcomes)
    summary = summarize([st.status for st in done])
    return finish(s, execution_id, attempt=attempt, status=status, actor="w", summary=summary, steps=done)


def run_member(execution_id: uuid.UUID, outcomes: Outcomes, *, commit: bool = True) -> Session | None:
    """Claim and finish one case execution with these test outcomes (``commit`` False: the session
    is returned with the finish and its reactions done, not committed)."""
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker="w1", lease_s=30)
    assert attempt is not None
    s = new_session()
    s.begin()
    assert finish_with(s, execution_id, attempt, outcomes)
    if not commit:
        react(s)  # what the commit would do first
        return s
    s.commit()
    s.close()
    return None


def members_of(suite_run: uuid.UUID) -> list[uuid.UUID]:
    with new_session() as s:
        return list(
            s.scalars(
                select(Execution.id)
                .where(Execution.parent_execution_id == suite_run)
                .order_by(Execution.created_at, Execution.id)
            )
        )


def suite_with_gate(
    client: TestClient, maintainer: Headers, members: list[TestCase], gate: dict[str, Any] | None
) -> str:
    body: dict[str, Any] = {"name": f"s-{uuid.uuid4().hex[:6]}", "case_ids": [str(c.id) for c in members]}
    if gate is not None:
        body["gate"] = gate
    response = client.post(SUITES, json=body, headers=maintainer)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def submit_suite(client: TestClient, headers: Headers, suite_id: str, **extra: Any) -> uuid.UUID:
    body = {"test_suite_id": suite_id, "branch": "main", **extra}
    response = client.post(f"{EXECUTIONS}/suite", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def run_suite(
    client: TestClient, headers: Headers, suite_id: str, outcomes: list[Outcomes], **extra: Any
) -> dict[str, Any]:
    run = submit_suite(client, headers, suite_id, **extra)
    for member, member_outcomes in zip(members_of(run), outcomes, strict=True):
        run_member(member, member_outcomes)
    response = client.get(f"{EXECUTIONS}/{run}", headers=headers)
    assert response.status_code == 200
    return dict(response.json())
