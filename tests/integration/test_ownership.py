"""Who may act on an execution: testers cancel and retry their own; scheduled runs and suite members
need a maintainer or admin. Who sees what: env values in specs are masked below maintainer."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from db.models import TestCase
from tests.integration.scheduling import case_in_db, children_of, row, run_as_worker
from tests.integration.support import problem

Headers = dict[str, str]
EXECUTIONS = "/api/v1/executions"


@pytest.fixture
def alice(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER, name="alice")


@pytest.fixture
def bob(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER, name="bob")


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER, name="mia")


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID) -> uuid.UUID:
    response = client.post(f"{EXECUTIONS}/case", json={"test_case_id": str(case_id)}, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def cancel(client: TestClient, headers: Headers, execution_id: uuid.UUID) -> object:
    return client.post(f"{EXECUTIONS}/{execution_id}/cancel", headers=headers)


def retry(client: TestClient, headers: Headers, execution_id: uuid.UUID) -> object:
    return client.post(f"{EXECUTIONS}/{execution_id}/retry", headers=headers)


# ---- cancel and retry ------------------------------------------------------------------------------


def test_a_tester_cannot_cancel_or_retry_another_testers_execution(
    client: TestClient, session: Session, alice: Headers, bob: Headers
) -> None:
    case = case_in_db(session)
    waiting = submit(client, alice, case.id)
    body = problem(cancel(client, bob, waiting), 403)
    assert "requested by another user" in body["detail"] and "only their own" in body["detail"]
    assert row(waiting).status == "QUEUED"

    failed = submit(client, alice, case.id)
    run_as_worker(failed, Status.FAILED)
    body = problem(retry(client, bob, failed), 403)
    assert "retry only their own" in body["detail"]
    assert row(failed).status == "FAILED" and children_of(failed) == []


def test_a_tester_cancels_and_retries_their_own(client: TestClient, session: Session, alice: Headers) -> None:
    case = case_in_db(session)
    waiting = submit(client, alice, case.id)
    assert cancel(client, alice, waiting).json()["status"] == "CANCELLED"
    failed = submit(client, alice, case.id)
    run_as_worker(failed, Status.FAILED)
    response = retry(client, alice, failed)
    assert response.status_code == 201, response.text
    # The retry stays the requester's: they may act on it too.
    assert cancel(client, alice, uuid.UUID(response.json()["id"])).json()["status"] == "CANCELLED"


@pytest.mark.parametrize("role", [Role.MAINTAINER, Role.ADMIN])
def test_maintainers_and_admins_cancel_and_retry_anyones(
    client: TestClient, session: Session, alice: Headers, auth: Callable[..., Headers], role: Role
) -> None:
    boss = auth(role)
    case = case_in_db(session)
    waiting = submit(client, alice, case.id)
    assert cancel(client, boss, waiting).status_code == 200
    assert row(waiting).status == "CANCELLED"
    failed = submit(client, alice, case.id)
    run_as_worker(failed, Status.FAILED)
    response = retry(client, boss, failed)
    assert response.status_code == 201, response.text
    assert response.json()["parent_execution_id"] == str(failed)


def test_scheduled_runs_need_a_maintainer_even_for_the_tester_who_triggered_them(
    client: TestClient, session: Session, alice: Headers, maintainer: Headers
) -> None:
    case = case_in_db(session)
    schedule = client.post(
        "/api/v1/schedules",
        json={"name": "nightly", "cron": "0 2 * * *", "test_case_id": str(case.id)},
        headers=maintainer,
    ).json()
    first = client.post(f"/api/v1/schedules/{schedule['id']}/trigger", headers=alice).json()
    body = problem(cancel(client, alice, uuid.UUID(first["id"])), 403)
    assert "started by a schedule" in body["detail"] and "maintainer or admin" in body["detail"]
    assert row(uuid.UUID(first["id"])).status == "QUEUED"
    assert cancel(client, maintainer, uuid.UUID(first["id"])).status_code == 200

    second = uuid.UUID(client.post(f"/api/v1/schedules/{schedule['id']}/trigger", headers=alice).json()["id"])
    run_as_worker(second, Status.FAILED)
    problem(retry(client, alice, second), 403)
    retried = retry(client, maintainer, second)
    assert retried.status_code == 201, retried.text
    # A retry of a scheduled run is part of that run: still maintainer+.
    problem(cancel(client, alice, uuid.UUID(retried.json()["id"])), 403)


def test_suite_members_need_a_maintainer_and_the_submitter_cancels_the_suite_as_a_whole(
    client: TestClient, session: Session, alice: Headers, maintainer: Headers
) -> None:
    cases = [case_in_db(session, name=f"m{i}") for i in range(2)]
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "pair", "case_ids": [str(c.id) for c in cases]},
        headers=maintainer,
    ).json()
    suite_run = uuid.UUID(
        client.post(f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"]}, headers=alice).json()["id"]
    )
    first, second = (m.id for m in children_of(suite_run))
    run_as_worker(first, Status.FAILED)

    body = problem(retry(client, alice, first), 403)
    assert "member of suite execution" in body["detail"]
    body = problem(cancel(client, alice, second), 403)
    assert "member of suite execution" in body["detail"]
    assert row(second).status == "QUEUED"

    assert retry(client, maintainer, first).status_code == 201
    assert cancel(client, maintainer, second).status_code == 200
    assert cancel(client, alice, suite_run).json()["status"] == "CANCELLED"  # hers, as a whole


def test_a_missing_execution_is_404_before_ownership(client: TestClient, alice: Headers) -> None:
    problem(cancel(client, alice, uuid.uuid4()), 404)
    problem(retry(client, alice, uuid.uuid4()), 404)


# ---- env values in specs -----------------------------------------------------------------------------


def case_with_env(session: Session) -> TestCase:
    """A case whose steps carry plain env values and a secret reference (written as stored)."""
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name="deploy-check",
            kind="generic",
            spec={
                "workspace": "demo",
                "steps": [
                    {"run": ["true"], "env": {"API_TOKEN": "hunter2-very-secret", "MODE": "staging"}},
                    {"run": ["true"], "env": {"DEPLOY": {"secret": "deploy-token"}, "LEVEL": "3"}},
                    {"run": ["true"]},
                ],
            },
            tags=["deploy"],
            timeout_s=60,
        )
        session.add(case)
    return case


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TESTER])
def test_readers_below_maintainer_see_env_values_masked(
    client: TestClient, session: Session, auth: Callable[..., Headers], role: Role
) -> None:
    case = case_with_env(session)
    reader = auth(role)
    one = client.get(f"/api/v1/test-cases/{case.id}", headers=reader)
    listed = client.get("/api/v1/test-cases", headers=reader)
    tagged = client.get("/api/v1/test-cases", params={"tag": "deploy"}, headers=reader)
    for response in (one, listed, tagged):
        assert response.status_code == 200, response.text
        assert "hunter2" not in response.text and "staging" not in response.text
    steps = one.json()["spec"]["steps"]
    assert steps[0]["env"] == {"API_TOKEN": "***", "MODE": "***"}
    assert steps[1]["env"] == {"DEPLOY": {"secret": "deploy-token"}, "LEVEL": "***"}  # a reference, no value
    assert "env" not in steps[2]
    assert (steps[0]["run"], one.json()["spec"]["workspace"]) == (["true"], "demo")  # the rest as it is
    assert listed.json()["items"][0]["spec"] == one.json()["spec"]
    with session.begin():  # only the response is masked, never the stored spec
        stored = session.get(TestCase, case.id, populate_existing=True)
        assert stored is not None
        assert stored.spec["steps"][0]["env"]["API_TOKEN"] == "hunter2-very-secret"


@pytest.mark.parametrize("role", [Role.MAINTAINER, Role.ADMIN])
def test_maintainers_and_admins_see_env_values(
    client: TestClient, session: Session, auth: Callable[..., Headers], role: Role
) -> None:
    case = case_with_env(session)
    reader = auth(role)
    one = client.get(f"/api/v1/test-cases/{case.id}", headers=reader).json()
    assert one["spec"]["steps"][0]["env"] == {"API_TOKEN": "hunter2-very-secret", "MODE": "staging"}
    assert one["spec"]["steps"][1]["env"] == {"DEPLOY": {"secret": "deploy-token"}, "LEVEL": "3"}
    listed = client.get("/api/v1/test-cases", headers=reader).json()["items"]
    assert listed[0]["spec"] == one["spec"]
