"""POST /api/v1/executions/batch: many executions in one request, each as if submitted alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from db.events import list_events
from db.models import Execution, ExecutionTransition, TestCase
from tests.helpers import claim_attempt, make_case
from tests.integration.support import count_rows, problem, published_ids

BATCH = "/api/v1/executions/batch"
SUBMIT = "/api/v1/executions/case"


@pytest.fixture
def tester(auth: Callable[..., dict[str, str]]) -> dict[str, str]:
    return auth(Role.TESTER)


def post(
    client: TestClient, headers: dict[str, str], items: list[dict[str, Any]], key: str | None = None
) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(BATCH, json={"items": items}, headers={**headers, **extra})


def test_each_item_becomes_its_own_queued_execution_in_order_and_is_published(
    client: TestClient, tester: dict[str, str], session: Session, redis_client: redis.Redis
) -> None:
    a, b = make_case(session), make_case(session)
    items = [
        {"test_case_id": str(a.id), "priority": "HIGH", "run_id": "build-9"},
        {"test_case_id": str(b.id), "params": {"browser": "firefox"}},
        {"test_case_id": str(a.id), "priority": "LOW", "trigger_kind": "ci"},
    ]
    r = post(client, tester, items)
    assert r.status_code == 201, r.text
    made = r.json()["items"]
    assert [m["test_case_id"] for m in made] == [str(a.id), str(b.id), str(a.id)]
    assert [m["priority"] for m in made] == ["HIGH", "NORMAL", "LOW"]
    assert made[0]["run_id"] == "build-9" and made[1]["params"] == {"browser": "firefox"}
    assert made[2]["trigger_kind"] == "ci"
    assert all(m["status"] == "QUEUED" and m["attempt"] == 0 for m in made)
    assert all(m["correlation_id"] == m["id"] == m["root_execution_id"] for m in made)
    assert len({m["id"] for m in made}) == 3
    assert published_ids(redis_client, "high") == [made[0]["id"]]
    assert published_ids(redis_client, "normal") == [made[1]["id"]]
    assert published_ids(redis_client, "low") == [made[2]["id"]]

    for m in made:  # what the API shows later is what the batch answered
        shown = client.get(f"/api/v1/executions/{m['id']}", headers=tester).json()
        assert shown == m
    with session.begin():
        for m in made:
            execution_id = uuid.UUID(m["id"])
            transitions = session.scalars(
                select(ExecutionTransition).where(ExecutionTransition.execution_id == execution_id)
            ).all()
            assert [(t.from_status, t.to_status) for t in transitions] == [(None, "QUEUED")]
            events = list_events(session, root_id=execution_id, after=0)
            assert [(e.seq, e.type, e.data["to"]) for e in events] == [(1, "transition", "QUEUED")]
            assert events[0].data["transition_id"] == transitions[0].id


def test_a_batch_execution_runs_like_any_other(
    client: TestClient, tester: dict[str, str], session: Session
) -> None:
    """The worker's claim works on batch rows (snapshot, params and lease as for a single submit)."""
    case = make_case(session)
    made = post(client, tester, [{"test_case_id": str(case.id)}]).json()["items"]
    with session.begin():
        assert claim_attempt(session, uuid.UUID(made[0]["id"]), worker="w", lease_s=30) == 1
        row = session.get(Execution, uuid.UUID(made[0]["id"]))
        assert row is not None and row.status == "RUNNING" and row.case_snapshot["name"] == case.name


def test_one_bad_item_creates_nothing_and_the_problem_names_it(
    client: TestClient, tester: dict[str, str], session: Session, redis_client: redis.Redis
) -> None:
    case = make_case(session)
    good = {"test_case_id": str(case.id)}
    before = count_rows()
    problem(
        post(client, tester, [good, {"test_case_id": str(uuid.uuid4())}]), 404, "body.items.1.test_case_id"
    )
    problem(post(client, tester, [good, good, {"test_case_id": str(case.id), "priority": "URGENT"}]), 422)
    body = problem(post(client, tester, [good, {"test_case_id": str(case.id), "trigger_kind": "retry"}]), 422)
    assert body["field"] == "body.items.1.trigger_kind"
    problem(
        post(client, tester, [{"test_case_id": str(case.id), "parent_execution_id": str(uuid.uuid4())}]),
        422,
        "body.items.0.parent_execution_id",
    )
    problem(client.post(BATCH, json={"items": []}, headers=tester), 422)
    problem(client.post(BATCH, json={"items": [good] * 501}, headers=tester), 422)
    problem(client.post(BATCH, json={"items": [good], "extra": 1}, headers=tester), 422)
    assert count_rows() == before
    assert published_ids(redis_client, "normal") == []


def test_a_repeated_batch_with_its_key_returns_the_first_executions(
    client: TestClient, tester: dict[str, str], session: Session, redis_client: redis.Redis
) -> None:
    a, b = make_case(session), make_case(session)
    items = [{"test_case_id": str(a.id)}, {"test_case_id": str(b.id)}]
    first = post(client, tester, items, key="nightly-42")
    assert first.status_code == 201
    again = post(client, tester, items, key="nightly-42")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert [m["id"] for m in again.json()["items"]] == [m["id"] for m in first.json()["items"]]
    assert len(published_ids(redis_client, "normal")) == 2  # not published again
    problem(post(client, tester, items[:1], key="nightly-42"), 422, "Idempotency-Key")
    problem(post(client, tester, list(reversed(items)), key="nightly-42"), 422, "Idempotency-Key")
    # A key from a single submission is not a batch's, and the other way round.
    assert client.post(SUBMIT, json=items[0], headers={**tester, "Idempotency-Key": "one"}).status_code == 201
    problem(post(client, tester, items[:1], key="one"), 422, "Idempotency-Key")
    with session.begin():
        assert session.scalar(select(TestCase).where(TestCase.id == a.id)) is not None


def test_viewers_may_not_submit_batches(
    client: TestClient, auth: Callable[..., dict[str, str]], session: Session
) -> None:
    case = make_case(session)
    problem(post(client, auth(Role.VIEWER), [{"test_case_id": str(case.id)}]), 403)
    problem(client.post(BATCH, json={"items": [{"test_case_id": str(case.id)}]}), 401)
