"""Cancellation over the API: waiting and paused executions at once, running ones by request, suites
with their members, and finished ones refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from db.cancel import cancel_requested
from db.session import new_session
from tests.helpers import claim_attempt
from tests.integration.scheduling import (
    case_in_db,
    children_of,
    claim_one,
    finish_one,
    row,
    run_as_worker,
    transitions,
)
from tests.integration.support import problem

Headers = dict[str, str]
EXECUTIONS = "/api/v1/executions"


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER, name="tess")


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID, **body: object) -> uuid.UUID:
    response = client.post(f"{EXECUTIONS}/case", json={"test_case_id": str(case_id), **body}, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def cancel(
    client: TestClient, headers: Headers, execution_id: uuid.UUID, reason: str | None = None
) -> object:
    return client.post(
        f"{EXECUTIONS}/{execution_id}/cancel", json={"reason": reason} if reason else None, headers=headers
    )


def test_a_queued_execution_is_cancelled_at_once_and_a_later_delivery_drops_it(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    response = cancel(client, tester, execution_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "CANCELLED" and body["finished_at"] is not None
    assert transitions(execution_id)[-1] == ("QUEUED", "CANCELLED", "cancelled by tess")
    with new_session() as s, s.begin():  # the message still in Redis is delivered: the claim fails
        assert claim_attempt(s, execution_id, worker="late", lease_s=30) is None
    assert row(execution_id).status == "CANCELLED" and row(execution_id).attempt == 0


def test_a_scheduled_retry_is_cancelled_at_once(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(session, retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 600})
    first_id = submit(client, tester, case.id)
    run_as_worker(first_id, Status.FAILED)
    (scheduled,) = children_of(first_id)
    assert scheduled.status == "SCHEDULED"
    response = cancel(client, tester, scheduled.id, reason="not needed any more")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"
    assert transitions(scheduled.id)[-1] == ("SCHEDULED", "CANCELLED", "not needed any more")


def test_a_paused_manual_execution_is_cancelled_at_once(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session, kind="manual").id)
    finish_one(execution_id, claim_one(execution_id), Status.PAUSED)
    assert row(execution_id).status == "PAUSED"
    response = cancel(client, tester, execution_id)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"
    assert transitions(execution_id)[-1][:2] == ("PAUSED", "CANCELLED")


def test_a_running_execution_gets_a_cancel_request_its_worker_acts_on(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    attempt = claim_one(execution_id)
    response = cancel(client, tester, execution_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "RUNNING" and body["cancel_requested_at"] is not None
    with new_session() as s:
        assert cancel_requested(s, execution_id, attempt=attempt)
        assert not cancel_requested(s, execution_id, attempt=attempt + 1)  # only this attempt's worker
    again = cancel(client, tester, execution_id)  # asking twice is harmless
    assert again.status_code == 200 and again.json()["cancel_requested_at"] == body["cancel_requested_at"]
    finish_one(execution_id, attempt, Status.CANCELLED, "cancelled")  # what its worker then records
    assert row(execution_id).status == "CANCELLED"


def test_cancelling_a_suite_cascades_to_every_unfinished_member(
    client: TestClient, session: Session, tester: Headers, auth: Callable[..., Headers]
) -> None:
    cases = [case_in_db(session, name=f"m{i}") for i in range(3)]
    maintainer = auth(Role.MAINTAINER)
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "cascade", "case_ids": [str(c.id) for c in cases]},
        headers=maintainer,
    ).json()
    suite_id = client.post(f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"]}, headers=tester).json()[
        "id"
    ]
    items = client.get(EXECUTIONS, params={"parent_execution_id": suite_id}, headers=tester).json()["items"]
    by_name = {e["test_case_name"]: uuid.UUID(e["id"]) for e in items}
    run_as_worker(by_name["m0"], Status.PASSED)
    claim_one(by_name["m1"])  # running

    response = cancel(client, tester, uuid.UUID(suite_id))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"
    assert row(by_name["m0"]).status == "PASSED"  # finished members keep their result
    running = row(by_name["m1"])
    assert running.status == "RUNNING" and running.cancel_requested_at is not None
    assert row(by_name["m2"]).status == "CANCELLED"
    assert transitions(by_name["m2"])[-1][2] == "suite cancelled: cancelled by tess"


@pytest.mark.parametrize("final", [Status.PASSED, Status.FAILED, Status.CANCELLED])
def test_a_finished_execution_cannot_be_cancelled(
    client: TestClient, session: Session, tester: Headers, final: Status
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    if final is Status.CANCELLED:
        cancel(client, tester, execution_id)
    else:
        run_as_worker(execution_id, final)
    body = problem(cancel(client, tester, execution_id), 409)
    assert body["current_status"] == final.value
    assert final.value in body["detail"]
    assert row(execution_id).status == final.value


def test_who_may_cancel_and_what_is_checked(
    client: TestClient, session: Session, tester: Headers, auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    problem(cancel(client, auth(Role.VIEWER), execution_id), 403)
    problem(cancel(client, tester, uuid.uuid4()), 404)
    problem(
        client.post(f"{EXECUTIONS}/{execution_id}/cancel", json={"reason": "x", "why": 1}, headers=tester),
        422,
        "body.why",
    )
    assert row(execution_id).status == "QUEUED"
