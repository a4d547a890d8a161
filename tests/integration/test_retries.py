"""Retries: automatic by policy (RETRYING + a SCHEDULED child the tick queues), flaky marking,
policy layers from case, suite and submission, and a person's retry or repair."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from tests.integration.scheduling import (
    case_in_db,
    children_of,
    claim_one,
    finish_one,
    row,
    run_as_worker,
    tick,
    tick_until,
    transitions,
)
from tests.integration.support import generic_case_body, problem, published_ids

Headers = dict[str, str]
EXECUTIONS = "/api/v1/executions"
FAIL_TWICE = {
    "max_retries": 2,
    "retry_on": ["FAILED"],
    "backoff_base_s": 1.5,
    "backoff_cap_s": 60,
    "jitter": 0,
}


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER)


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER)


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID, **body: object) -> dict:
    response = client.post(f"{EXECUTIONS}/case", json={"test_case_id": str(case_id), **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_failed_attempt_with_retries_left_becomes_retrying_with_a_scheduled_child(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    case = case_in_db(session, retry_policy=FAIL_TWICE)
    first = submit(client, tester, case.id, run_id="build-9")
    assert first["retry_policy"] == {
        **FAIL_TWICE,
        "backoff_base_s": 1.5,
        "backoff_cap_s": 60.0,
        "jitter": 0.0,
    }
    assert first["retry_index"] == 0 and first["flaky"] is False
    first_id = uuid.UUID(first["id"])

    run_as_worker(first_id, Status.FAILED, "assertion failed")

    failed = row(first_id)
    assert failed.status == "RETRYING"
    assert transitions(first_id)[-2:] == [
        ("RUNNING", "FAILED", "assertion failed"),
        ("FAILED", "RETRYING", "retry 1 of 2 in 1.5s"),
    ]
    (child,) = children_of(first_id)
    assert child.status == "SCHEDULED"
    assert child.trigger_kind == "retry"
    assert (child.correlation_id, child.run_id, child.root_execution_id) == (
        failed.correlation_id,
        "build-9",
        first_id,
    )
    assert child.retry_index == 1 and child.attempt == 0 and child.max_attempts == failed.max_attempts
    assert child.retry_policy == failed.retry_policy
    assert failed.finished_at is not None and child.run_at is not None
    # run_at = the failure + the backoff (no jitter here); measured on the database clock.
    assert abs((child.run_at - failed.finished_at) - timedelta(seconds=1.5)) < timedelta(seconds=0.5)
    assert published_ids(redis_client, "normal") == [str(first_id)]  # the retry is not published yet

    assert tick().promoted == 0  # not due yet
    assert row(child.id).status == "SCHEDULED"
    tick_until(lambda: row(child.id).status == "QUEUED", timeout=10)
    promoted = row(child.id)
    assert promoted.queued_at is not None and promoted.queued_at >= child.run_at
    assert transitions(child.id) == [
        (None, "SCHEDULED", f"retry of {first_id}"),
        ("SCHEDULED", "QUEUED", "due"),
    ]
    assert published_ids(redis_client, "normal") == [str(first_id), str(child.id)]

    listed = client.get(EXECUTIONS, params={"correlation_id": str(first_id)}, headers=tester).json()["items"]
    assert {e["id"]: e["retry_index"] for e in listed} == {str(first_id): 0, str(child.id): 1}


def test_a_test_that_fails_then_passes_on_retry_is_flaky(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(session, retry_policy={**FAIL_TWICE, "backoff_base_s": 0.05})
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, Status.FAILED)
    (retry,) = children_of(first_id)
    tick_until(lambda: row(retry.id).status == "QUEUED")
    run_as_worker(retry.id, Status.PASSED)

    shown = client.get(f"{EXECUTIONS}/{retry.id}", headers=tester).json()
    assert (shown["status"], shown["flaky"], shown["retry_index"]) == ("PASSED", True, 1)
    original = client.get(f"{EXECUTIONS}/{first_id}", headers=tester).json()
    assert (original["status"], original["flaky"]) == ("RETRYING", False)


def test_a_first_try_that_passes_is_not_flaky(client: TestClient, session: Session, tester: Headers) -> None:
    case = case_in_db(session, retry_policy=FAIL_TWICE)
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, Status.PASSED)
    assert (row(first_id).status, row(first_id).flaky) == ("PASSED", False)
    assert children_of(first_id) == []


def test_exhausted_retries_stay_failed_and_are_listed_with_their_reason(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(
        session, retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.05}
    )
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, Status.FAILED, "first failure")
    (retry,) = children_of(first_id)
    tick_until(lambda: row(retry.id).status == "QUEUED")
    run_as_worker(retry.id, Status.FAILED, "second failure")

    assert row(retry.id).status == "FAILED"  # no retry left: final
    assert children_of(retry.id) == []
    assert [t[1] for t in transitions(retry.id)] == ["SCHEDULED", "QUEUED", "RUNNING", "FAILED"]
    failed = client.get(EXECUTIONS, params={"status": "FAILED"}, headers=tester).json()["items"]
    assert [(e["id"], e["error"]) for e in failed] == [(str(retry.id), "second failure")]


@pytest.mark.parametrize(
    ("policy", "outcome", "retried"),
    [
        (None, Status.ERROR, False),  # server default: no retries
        (None, Status.FAILED, False),
        ({"max_retries": 1}, Status.ERROR, True),  # default retry_on: ERROR and TIMEOUT
        ({"max_retries": 1}, Status.TIMEOUT, True),
        ({"max_retries": 1}, Status.FAILED, False),  # ... not FAILED
        ({"max_retries": 1, "retry_on": ["FAILED"]}, Status.ERROR, False),
    ],
)
def test_which_results_are_retried(
    client: TestClient, session: Session, tester: Headers, policy: dict | None, outcome: Status, retried: bool
) -> None:
    case = case_in_db(session, retry_policy=policy)
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, outcome)
    assert row(first_id).status == ("RETRYING" if retried else outcome.value)
    assert len(children_of(first_id)) == (1 if retried else 0)


def test_the_submission_overrides_the_case_policy_key_by_key(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(session, retry_policy={"max_retries": 0, "backoff_base_s": 7, "jitter": 0.2})
    submitted = submit(client, tester, case.id, retry_policy={"max_retries": 1, "retry_on": ["FAILED"]})
    assert submitted["retry_policy"] == {
        "max_retries": 1,
        "retry_on": ["FAILED"],
        "backoff_base_s": 7,
        "backoff_cap_s": 300.0,
        "jitter": 0.2,
    }
    first_id = uuid.UUID(submitted["id"])
    run_as_worker(first_id, Status.FAILED)
    assert row(first_id).status == "RETRYING"


def test_a_case_keeps_its_retry_policy_through_the_api(client: TestClient, maintainer: Headers) -> None:
    policy = {"max_retries": 3, "retry_on": ["FAILED", "ERROR"], "backoff_base_s": 2.0}
    created = client.post(
        "/api/v1/test-cases", json=generic_case_body(retry_policy=policy), headers=maintainer
    )
    assert created.status_code == 201, created.text
    assert created.json()["retry_policy"] == policy  # only the keys set: the rest is inherited
    case_id = created.json()["id"]
    patched = client.patch(
        f"/api/v1/test-cases/{case_id}", json={"retry_policy": {"max_retries": 1}}, headers=maintainer
    )
    assert patched.json()["retry_policy"] == {"max_retries": 1}
    cleared = client.patch(f"/api/v1/test-cases/{case_id}", json={"retry_policy": None}, headers=maintainer)
    assert cleared.json()["retry_policy"] is None


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"max_retries": 21}, "body.retry_policy.max_retries"),
        ({"max_retries": -1}, "body.retry_policy.max_retries"),
        ({"retry_on": ["PASSED"]}, "body.retry_policy.retry_on.0"),
        ({"backoff_base_s": 0}, "body.retry_policy.backoff_base_s"),
        ({"backoff_base_s": 10, "backoff_cap_s": 5}, "body.retry_policy.backoff_cap_s"),
        ({"jitter": 1.5}, "body.retry_policy.jitter"),
        ({"max_retry": 2}, "body.retry_policy.max_retry"),  # unknown keys are refused
        ("three", "body.retry_policy"),
    ],
)
def test_invalid_retry_policies_are_refused_naming_the_field(
    client: TestClient, session: Session, maintainer: Headers, tester: Headers, policy: object, field: str
) -> None:
    problem(
        client.post("/api/v1/test-cases", json=generic_case_body(retry_policy=policy), headers=maintainer),
        422,
        field,
    )
    case = case_in_db(session)
    problem(
        client.post(
            f"{EXECUTIONS}/case", json={"test_case_id": str(case.id), "retry_policy": policy}, headers=tester
        ),
        422,
        field,
    )


# ---- a person's retry ------------------------------------------------------------------------------


def retry(client: TestClient, headers: Headers, execution_id: uuid.UUID, **body: object) -> object:
    return client.post(f"{EXECUTIONS}/{execution_id}/retry", json=body or None, headers=headers)


def test_a_person_retries_a_failed_execution_at_once(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    case = case_in_db(session)  # no automatic retries
    first_id = uuid.UUID(submit(client, tester, case.id, run_id="r-1")["id"])
    run_as_worker(first_id, Status.FAILED)
    assert row(first_id).status == "FAILED"

    response = retry(client, tester, first_id)
    assert response.status_code == 201, response.text
    child = response.json()
    assert response.headers["location"] == f"{EXECUTIONS}/{child['id']}"
    assert (child["status"], child["trigger_kind"], child["parent_execution_id"]) == (
        "SCHEDULED",
        "retry",
        str(first_id),
    )
    assert (child["correlation_id"], child["run_id"], child["retry_index"]) == (str(first_id), "r-1", 1)
    assert row(first_id).status == "RETRYING"
    assert tick().promoted == 1  # due at once: the next tick queues it
    assert row(uuid.UUID(child["id"])).status == "QUEUED"
    assert str(child["id"]) in published_ids(redis_client, "normal")

    again = problem(retry(client, tester, first_id), 409)
    assert child["id"] in again["detail"]


def test_a_repair_is_its_own_trigger_and_not_flaky_when_it_passes(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(session)
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, Status.ERROR)
    response = retry(client, tester, first_id, repair=True)
    assert response.status_code == 201, response.text
    repair = response.json()
    assert (repair["trigger_kind"], repair["retry_index"], repair["status"]) == ("repair", 0, "SCHEDULED")
    tick()
    run_as_worker(uuid.UUID(repair["id"]), Status.PASSED)
    done = client.get(f"{EXECUTIONS}/{repair['id']}", headers=tester).json()
    assert (done["status"], done["flaky"]) == ("PASSED", False)


@pytest.mark.parametrize("final", [Status.CANCELLED, Status.PASSED, Status.ABORTED])
def test_finished_executions_that_cannot_become_retrying_get_a_child_all_the_same(
    client: TestClient, session: Session, tester: Headers, final: Status
) -> None:
    case = case_in_db(session)
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    if final is Status.CANCELLED:
        assert client.post(f"{EXECUTIONS}/{first_id}/cancel", headers=tester).status_code == 200
    else:
        run_as_worker(first_id, final)
    response = retry(client, tester, first_id)
    assert response.status_code == 201, response.text
    child = response.json()
    assert (child["trigger_kind"], child["parent_execution_id"], child["status"]) == (
        "retry",
        str(first_id),
        "SCHEDULED",
    )
    assert child["retry_index"] == 0  # nothing failed before it
    assert row(first_id).status == final.value  # unchanged: it is terminal
    problem(retry(client, tester, first_id), 409)  # followed up once; retry the latest instead
    tick()
    run_as_worker(uuid.UUID(child["id"]), Status.PASSED)
    assert row(uuid.UUID(child["id"])).flaky is False


def test_what_cannot_be_retried(
    client: TestClient, session: Session, tester: Headers, auth: Callable[..., Headers]
) -> None:
    case = case_in_db(session)
    queued_id = uuid.UUID(submit(client, tester, case.id)["id"])
    body = problem(retry(client, tester, queued_id), 409)
    assert body["current_status"] == "QUEUED"
    claim_one(queued_id)
    problem(retry(client, tester, queued_id), 409)  # RUNNING
    problem(retry(client, tester, uuid.uuid4()), 404)
    problem(retry(client, auth(Role.VIEWER), queued_id), 403)
    problem(
        client.post(f"{EXECUTIONS}/{queued_id}/retry", json={"repair": "maybe"}, headers=tester),
        422,
        "body.repair",
    )


# ---- suites ----------------------------------------------------------------------------------------


def make_suite(client: TestClient, headers: Headers, case_ids: list[uuid.UUID], **extra: object) -> dict:
    body = {"name": f"suite-{uuid.uuid4().hex[:6]}", "case_ids": [str(c) for c in case_ids], **extra}
    response = client.post("/api/v1/test-suites", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def members(suite_execution_id: str, client: TestClient, headers: Headers) -> dict[str, dict]:
    """The suite's first-try members by case name."""
    items = client.get(EXECUTIONS, params={"parent_execution_id": suite_execution_id}, headers=headers).json()
    return {e["test_case_name"]: e for e in items["items"]}


def test_each_member_gets_its_case_policy_under_the_suite_and_the_submission(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    slow = case_in_db(session, name="slow", retry_policy={"backoff_base_s": 7, "max_retries": 5})
    plain = case_in_db(session, name="plain")
    suite = make_suite(client, maintainer, [slow.id, plain.id], retry_policy={"max_retries": 1, "jitter": 0})
    assert suite["retry_policy"] == {"max_retries": 1, "jitter": 0}
    response = client.post(
        f"{EXECUTIONS}/suite",
        json={"test_suite_id": suite["id"], "retry_policy": {"retry_on": ["FAILED"]}},
        headers=maintainer,
    )
    assert response.status_code == 201, response.text
    by_name = members(response.json()["id"], client, maintainer)
    assert by_name["slow"]["retry_policy"] == {
        "max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 7, "backoff_cap_s": 300.0, "jitter": 0,
    }  # fmt: skip
    assert by_name["plain"]["retry_policy"] == {
        "max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 1.0, "backoff_cap_s": 300.0, "jitter": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("retry_outcome", "suite_status"), [(Status.PASSED, "PASSED"), (Status.FAILED, "FAILED")]
)
def test_a_suite_result_uses_the_last_attempt_of_each_member(
    client: TestClient, session: Session, maintainer: Headers, retry_outcome: Status, suite_status: str
) -> None:
    shaky = case_in_db(session, name="shaky")
    steady = case_in_db(session, name="steady")
    policy = {"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.05, "jitter": 0}
    suite = make_suite(client, maintainer, [shaky.id, steady.id], retry_policy=policy)
    suite_id = client.post(
        f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"]}, headers=maintainer
    ).json()["id"]
    by_name = members(suite_id, client, maintainer)

    run_as_worker(uuid.UUID(by_name["steady"]["id"]), Status.PASSED)
    run_as_worker(uuid.UUID(by_name["shaky"]["id"]), Status.FAILED)
    (retry_row,) = children_of(uuid.UUID(by_name["shaky"]["id"]))
    assert retry_row.root_execution_id == uuid.UUID(suite_id)
    suite_now = client.get(f"{EXECUTIONS}/{suite_id}", headers=maintainer).json()
    assert suite_now["status"] == "RUNNING"  # the retry is still to come
    assert suite_now["progress"]["done"] == 1

    tick_until(lambda: row(retry_row.id).status == "QUEUED")
    run_as_worker(retry_row.id, retry_outcome)
    final = client.get(f"{EXECUTIONS}/{suite_id}", headers=maintainer).json()
    assert final["status"] == suite_status
    expected = {"PASSED": 2} if suite_status == "PASSED" else {"FAILED": 1, "PASSED": 1}
    assert final["progress"] == {"total": 2, "done": 2, "by_status": expected}
    assert row(retry_row.id).flaky is (retry_outcome is Status.PASSED)


def test_a_claimed_retry_runs_with_a_fresh_attempt_count(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = case_in_db(session, retry_policy={"max_retries": 1, "retry_on": ["ERROR"], "backoff_base_s": 0.05})
    first_id = uuid.UUID(submit(client, tester, case.id)["id"])
    run_as_worker(first_id, Status.ERROR)
    (child,) = children_of(first_id)
    tick_until(lambda: row(child.id).status == "QUEUED")
    attempt = claim_one(child.id)
    assert attempt == 1
    finish_one(child.id, attempt, Status.PASSED)
    assert row(child.id).status == "PASSED"
