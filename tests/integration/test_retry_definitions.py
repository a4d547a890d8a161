"""What a retry runs: a plain retry the snapshot that ran, a repair the case as it is now, and a
deleted case nothing at all (a person's retry is a 409, no automatic retry is scheduled)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from tests.integration.scheduling import case_in_db, children_of, row, run_as_worker, tick
from tests.integration.support import count_rows, problem

Headers = dict[str, str]
EXECUTIONS = "/api/v1/executions"
CASES = "/api/v1/test-cases"


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER, name="tess")


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER, name="mia")


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID | str) -> uuid.UUID:
    response = client.post(f"{EXECUTIONS}/case", json={"test_case_id": str(case_id)}, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def retry(client: TestClient, headers: Headers, execution_id: uuid.UUID, **body: Any) -> Any:
    return client.post(f"{EXECUTIONS}/{execution_id}/retry", json=body or None, headers=headers)


def steps(*argv: list[str]) -> dict[str, Any]:
    return {"workspace": "demo", "steps": [{"run": a} for a in argv]}


@pytest.mark.parametrize("repair", [False, True])
def test_a_retry_of_a_deleted_case_is_refused_and_creates_nothing(
    client: TestClient, session: Session, tester: Headers, maintainer: Headers, repair: bool
) -> None:
    case = case_in_db(session, name="gone-soon")
    first = submit(client, tester, case.id)
    run_as_worker(first, Status.FAILED)
    assert client.delete(f"{CASES}/{case.id}", headers=maintainer).status_code == 204
    before = count_rows()

    for who in (tester, maintainer):
        body = problem(retry(client, who, first, **({"repair": True} if repair else {})), 409)
        assert "'gone-soon'" in body["detail"] and "was deleted" in body["detail"]
        assert body["test_case_id"] == str(case.id)
    assert count_rows() == before
    assert row(first).status == "FAILED" and children_of(first) == []


def test_a_retry_of_a_suite_member_whose_case_was_deleted_is_refused(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    cases = [case_in_db(session, name=f"member-{i}") for i in range(2)]
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "pair", "case_ids": [str(c.id) for c in cases]},
        headers=maintainer,
    ).json()
    run = client.post(f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"]}, headers=maintainer).json()
    gone, kept = children_of(uuid.UUID(run["id"]))
    run_as_worker(gone.id, Status.FAILED)
    run_as_worker(kept.id, Status.FAILED)
    assert client.delete(f"{CASES}/{gone.test_case_id}", headers=maintainer).status_code == 204

    body = problem(retry(client, maintainer, gone.id), 409)
    assert "'member-0'" in body["detail"] and "was deleted" in body["detail"]
    assert children_of(gone.id) == []
    assert retry(client, maintainer, kept.id).status_code == 201  # the member whose case lives


def test_no_automatic_retry_is_scheduled_once_the_case_was_deleted(
    client: TestClient, session: Session, tester: Headers, maintainer: Headers
) -> None:
    case = case_in_db(
        session, retry_policy={"max_retries": 2, "retry_on": ["FAILED"], "backoff_base_s": 0.05}
    )
    first = submit(client, tester, case.id)
    assert client.delete(f"{CASES}/{case.id}", headers=maintainer).status_code == 204
    run_as_worker(first, Status.FAILED)  # it was queued before the delete: it ran, and failed
    assert row(first).status == "FAILED"  # final: nothing will run it again
    assert children_of(first) == []


def test_repair_after_a_fix_runs_the_current_version_and_a_plain_retry_the_snapshot(
    client: TestClient, tester: Headers, maintainer: Headers
) -> None:
    created = client.post(
        CASES,
        json={"name": "broken", "kind": "generic", "spec": steps(["false"]), "timeout_s": 30},
        headers=maintainer,
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    to_repair = submit(client, tester, case_id)
    to_retry = submit(client, tester, case_id)
    run_as_worker(to_repair, Status.FAILED)
    run_as_worker(to_retry, Status.FAILED)
    assert row(to_repair).case_snapshot["version"] == 1

    fixed = client.patch(
        f"{CASES}/{case_id}",
        json={"spec": steps(["true"], ["echo", "fixed"]), "timeout_s": 45},
        headers=maintainer,
    )
    assert fixed.status_code == 200 and fixed.json()["version"] == 2

    repaired = retry(client, tester, to_repair, repair=True)
    assert repaired.status_code == 201, repaired.text
    assert repaired.json()["trigger_kind"] == "repair"
    snapshot = row(uuid.UUID(repaired.json()["id"])).case_snapshot
    assert snapshot["version"] == 2
    assert [s["run"] for s in snapshot["spec"]["steps"]] == [["true"], ["echo", "fixed"]]
    assert snapshot["timeout_s"] == 45

    plain = retry(client, tester, to_retry)
    assert plain.status_code == 201, plain.text
    kept = row(uuid.UUID(plain.json()["id"])).case_snapshot
    assert kept == row(to_retry).case_snapshot  # what ran is what runs again
    assert kept["version"] == 1 and kept["spec"]["steps"][0]["run"] == ["false"]


def test_repair_of_a_passed_execution_also_takes_the_current_version(
    client: TestClient, session: Session, tester: Headers, maintainer: Headers
) -> None:
    case = case_in_db(session)
    first = submit(client, tester, case.id)
    run_as_worker(first, Status.PASSED)
    changed = client.patch(f"{CASES}/{case.id}", json={"spec": steps(["echo", "v2"])}, headers=maintainer)
    assert changed.status_code == 200, changed.text
    repaired = retry(client, tester, first, repair=True).json()
    child = row(uuid.UUID(repaired["id"]))
    assert child.case_snapshot["version"] == 2 and child.case_snapshot["spec"]["steps"][0]["run"] == [
        "echo",
        "v2",
    ]
    tick()
    assert row(child.id).status == "QUEUED"
