"""Submitting and reading executions over HTTP: idempotency, publishing, pagination, filters."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role
from anvil.domain.states import Status
from anvil.settings import get_settings
from db.models import Execution, TestCase
from db.transitions import transition
from tests.helpers import claim_attempt, make_case
from tests.integration.support import count_rows, problem, published_ids

SUBMIT = "/api/v1/executions/case"
LIST = "/api/v1/executions"


@pytest.fixture
def tester(auth: Callable[..., dict[str, str]]) -> dict[str, str]:
    return auth(Role.TESTER)


def submit(client: TestClient, headers: dict[str, str], body: dict[str, Any], key: str | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(SUBMIT, json=body, headers={**headers, **extra})


def test_submit_records_a_queued_execution_and_publishes_its_id(
    client: TestClient, tester: dict[str, str], case: TestCase, redis_client: redis.Redis
) -> None:
    r = submit(client, tester, {"test_case_id": str(case.id), "priority": "HIGH", "run_id": "build-7"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/executions/{body['id']}"
    assert body["status"] == "QUEUED" and body["attempt"] == 0
    assert body["priority"] == "HIGH" and body["trigger_kind"] == "api" and body["run_id"] == "build-7"
    assert body["correlation_id"] == body["id"]
    assert body["test_case_id"] == str(case.id) and body["test_case_name"] == case.name
    assert published_ids(redis_client, "high") == [body["id"]]
    assert published_ids(redis_client, "normal") == []

    shown = client.get(f"{LIST}/{body['id']}", params={"include": "steps,transitions"}, headers=tester)
    assert shown.status_code == 200
    assert shown.json()["steps"] == []
    assert [(t["from_status"], t["to_status"]) for t in shown.json()["transitions"]] == [(None, "QUEUED")]
    assert client.get(f"{LIST}/{body['id']}/transitions", headers=tester).json()[0]["to_status"] == "QUEUED"
    assert client.get(f"{LIST}/{body['id']}/steps", headers=tester).json() == []


def test_same_key_and_body_return_the_first_execution(
    client: TestClient, tester: dict[str, str], case: TestCase, session: Session, redis_client: redis.Redis
) -> None:
    body = {"test_case_id": str(case.id), "priority": "LOW", "params": {"x": 1}}
    first = submit(client, tester, body, key="deploy-42")
    again = submit(client, tester, dict(reversed(list(body.items()))), key="deploy-42")
    assert first.status_code == 201 and again.status_code in (200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert session.scalar(select(func.count()).select_from(Execution)) == 1
    # The replay neither creates nor publishes anything.
    assert published_ids(redis_client, "low") == [first.json()["id"]]


def test_same_key_with_another_body_is_refused(
    client: TestClient, tester: dict[str, str], case: TestCase, session: Session
) -> None:
    first = submit(client, tester, {"test_case_id": str(case.id)}, key="k1")
    assert first.status_code == 201
    before = count_rows()
    other = submit(client, tester, {"test_case_id": str(case.id), "priority": "CRITICAL"}, key="k1")
    body = problem(other, 422, field="Idempotency-Key")
    assert "Idempotency-Key" in body["detail"]
    assert count_rows() == before


def test_different_users_may_use_the_same_key(
    client: TestClient, auth: Callable[..., dict[str, str]], case: TestCase, session: Session
) -> None:
    alice, bob = auth(Role.TESTER, "alice"), auth(Role.TESTER, "bob")
    a = submit(client, alice, {"test_case_id": str(case.id)}, key="nightly")
    b = submit(client, bob, {"test_case_id": str(case.id)}, key="nightly")
    # Another body under the same key is fine for bob too: his keys are his own.
    b2 = submit(client, bob, {"test_case_id": str(case.id), "priority": "LOW"}, key="nightly-2")
    assert {a.status_code, b.status_code, b2.status_code} == {201}
    assert len({a.json()["id"], b.json()["id"], b2.json()["id"]}) == 3
    assert session.scalar(select(func.count()).select_from(Execution)) == 3


def test_without_a_key_every_submission_is_new(
    client: TestClient, tester: dict[str, str], case: TestCase
) -> None:
    ids = {submit(client, tester, {"test_case_id": str(case.id)}).json()["id"] for _ in range(3)}
    assert len(ids) == 3


def submit_together(key: str, headers: dict[str, str], body: dict[str, Any]) -> list[Any]:
    """Two clients post the same keyed request at the same moment; returns both responses."""
    from api.app import app

    barrier = threading.Barrier(2)
    answers: list[Any] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            with TestClient(app) as own:
                barrier.wait(timeout=10)
                answers.append(submit(own, headers, body, key=key))
        except BaseException as exc:  # a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return answers


def test_concurrent_submissions_with_one_key_make_one_execution(
    client: TestClient, tester: dict[str, str], case: TestCase, session: Session
) -> None:
    for round_ in range(10):
        key = f"race-{round_}"
        answers = submit_together(key, tester, {"test_case_id": str(case.id)})
        assert [a.status_code in (200, 201) for a in answers] == [True, True], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        assert session.scalar(select(func.count()).where(Execution.idempotency_key == key)) == 1
        session.rollback()


# --- listing ---------------------------------------------------------------------------------------


def make_executions(session: Session, queued: Callable[..., uuid.UUID], n: int) -> list[uuid.UUID]:
    """``n`` executions one second apart, with a run of equal timestamps across a page boundary.

    Returns their ids newest first, as the API must list them.
    """
    case = make_case(session)
    ids = [queued(case) for _ in range(n)]
    base = datetime(2024, 5, 1, tzinfo=UTC)
    stamps = [
        base + timedelta(seconds=12) if 12 <= i <= 17 else base + timedelta(seconds=i) for i in range(n)
    ]
    with session.begin():
        for ident, at in zip(ids, stamps, strict=True):
            session.execute(update(Execution).where(Execution.id == ident).values(created_at=at))
    # Newest first; equal timestamps are ordered by id, descending.
    return [ident for _, ident in sorted(zip(stamps, ids, strict=True), reverse=True)]


def walk(client: TestClient, headers: dict[str, str], **params: Any) -> tuple[list[list[str]], list[Any]]:
    pages: list[list[str]] = []
    cursors: list[Any] = []
    cursor = None
    for _ in range(50):
        r = client.get(LIST, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.text
        pages.append([item["id"] for item in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        cursors.append(cursor)
        if cursor is None:
            return pages, cursors
    raise AssertionError("pagination never ended")


def test_pages_walk_newest_first_without_gaps_or_duplicates(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    session: Session,
    queued: Callable[..., uuid.UUID],
) -> None:
    expected = [str(i) for i in make_executions(session, queued, 25)]
    pages, cursors = walk(client, auth(Role.VIEWER), limit=10)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [item for page in pages for item in page] == expected
    assert cursors[-1] is None and all(cursors[:-1])


def test_an_exact_multiple_of_the_page_size_ends_cleanly(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    session: Session,
    queued: Callable[..., uuid.UUID],
) -> None:
    expected = [str(i) for i in make_executions(session, queued, 20)]
    pages, _ = walk(client, auth(Role.VIEWER), limit=10)
    assert [item for page in pages for item in page] == expected
    assert [len(p) for p in pages] == [10, 10]


def test_limit_is_capped_by_the_server(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    session: Session,
    queued: Callable[..., uuid.UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_executions(session, queued, 8)
    monkeypatch.setattr(get_settings(), "page_limit_max", 3)
    r = client.get(LIST, params={"limit": 1000}, headers=auth(Role.VIEWER))
    assert r.status_code == 200
    assert len(r.json()["items"]) == 3
    assert r.json()["next_cursor"]


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        b64("foo"),
        b64("2024-01-01T00:00:00+00:00|not-a-uuid"),
        b64("yesterday|8f14e45f-ceea-467f-a0fd-317e60a567a9"),
        # Well-formed but without a time zone: the API never issues such a cursor.
        b64("2024-01-01T00:00:00|8f14e45f-ceea-467f-a0fd-317e60a567a9"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_a_garbage_cursor_is_refused_naming_it(
    client: TestClient, auth: Callable[..., dict[str, str]], cursor: str
) -> None:
    body = problem(client.get(LIST, params={"cursor": cursor}, headers=auth(Role.VIEWER)), 422)
    assert body["field"].split(".")[-1] == "cursor"


@pytest.mark.parametrize("limit", ["0", "-1", "ten"])
def test_a_bad_limit_is_refused(client: TestClient, auth: Callable[..., dict[str, str]], limit: str) -> None:
    problem(client.get(LIST, params={"limit": limit}, headers=auth(Role.VIEWER)), 422, field="query.limit")


def test_filters(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    session: Session,
    queued: Callable[..., uuid.UUID],
) -> None:
    case_a, case_b = make_case(session), make_case(session)
    plain = queued(case_a)
    critical = queued(case_a, priority=Priority.CRITICAL)
    in_run = [queued(case_b, run_id="build-9"), queued(case_b, run_id="build-9")]
    child = queued(case_b, correlation_id=plain, priority=Priority.LOW)
    with session.begin():
        assert claim_attempt(session, critical, worker="w", lease_s=30) == 1
        transition(session, in_run[0], Status.CANCELLED, actor="test")
    viewer = auth(Role.VIEWER)

    def ids(**params: Any) -> set[uuid.UUID]:
        r = client.get(LIST, params=params, headers=viewer)
        assert r.status_code == 200, r.text
        return {uuid.UUID(item["id"]) for item in r.json()["items"]}

    assert ids() == {plain, critical, *in_run, child}
    assert ids(status="RUNNING") == {critical}
    assert ids(status="QUEUED") == {plain, in_run[1], child}
    assert ids(status="RUNNING,CANCELLED") == {critical, in_run[0]}
    assert ids(status=["RUNNING", "CANCELLED"]) == {critical, in_run[0]}
    assert ids(priority="CRITICAL") == {critical}
    assert ids(priority="LOW,CRITICAL") == {critical, child}
    assert ids(test_case_id=str(case_a.id)) == {plain, critical}
    assert ids(run_id="build-9") == set(in_run)
    assert ids(correlation_id=str(plain)) == {plain, child}
    assert ids(test_case_id=str(case_b.id), status="QUEUED") == {in_run[1], child}
    assert ids(run_id="nope") == set()

    problem(client.get(LIST, params={"status": "DONE"}, headers=viewer), 422, field="query.status.0")
    problem(client.get(LIST, params={"priority": "URGENT"}, headers=viewer), 422, field="query.priority.0")
    problem(client.get(LIST, params={"test_case_id": "x"}, headers=viewer), 422, field="query.test_case_id")


def test_a_submission_names_what_it_tests_and_runs_can_be_found_by_it(
    client: TestClient, tester: dict[str, str], case: TestCase
) -> None:
    source = {
        "revision": "9f86d081884c7d659a2feaa0c55ad015",
        "branch": "feature/pay-2",
        "environment": "py3.11",
    }
    r = submit(client, tester, {"test_case_id": str(case.id), **source})
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in source} == source
    other = submit(client, tester, {"test_case_id": str(case.id), "branch": "main"}).json()
    assert other["revision"] is None and other["environment"] is None

    def ids(**params: Any) -> list[str]:
        return [item["id"] for item in client.get(LIST, params=params, headers=tester).json()["items"]]

    assert ids(branch="feature/pay-2") == [r.json()["id"]]
    assert ids(branch="main") == [other["id"]]
    assert ids(revision=source["revision"], environment="py3.11") == [r.json()["id"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("revision", "not a sha!"),
        ("revision", "a" * 65),
        ("branch", "has space"),
        ("branch", "bad..\x00"),
        ("branch", ""),
        ("environment", "line\nbreak"),
        ("environment", "x" * 101),
        ("revision", 123),
    ],
)
def test_a_bad_revision_branch_or_environment_is_refused_naming_it(
    client: TestClient, tester: dict[str, str], case: TestCase, field: str, value: object
) -> None:
    r = submit(client, tester, {"test_case_id": str(case.id), field: value})
    problem(r, 422, field=f"body.{field}")
