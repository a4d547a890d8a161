"""Suites over HTTP and in the database: CRUD, expansion in one transaction, settling exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.states import Status
from db.attempts import finish
from db.models import Execution, ExecutionTransition, TestCase, TestSuite
from db.session import new_session
from db.suite_runs import create_suite_execution
from db.suites import create_suite
from tests.helpers import claim_attempt, create_execution, generic_spec
from tests.integration.support import count_rows, problem, published_ids

SUITES = "/api/v1/test-suites"
SUBMIT = "/api/v1/executions/suite"
EXECUTIONS = "/api/v1/executions"
Headers = dict[str, str]


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER)


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER)


def cases(session: Session, n: int, *, tags: list[str] | None = None) -> list[TestCase]:
    """``n`` generic cases (names sort in creation order), committed."""
    made = []
    with session.begin():
        for i in range(n):
            case = TestCase(
                id=uuid.uuid4(), name=f"c{i:03d}-{uuid.uuid4().hex[:6]}", kind="generic",
                spec=generic_spec(["true"]), tags=tags or [], timeout_s=60,
            )  # fmt: skip
            session.add(case)
            made.append(case)
    return made


def suite_in_db(session: Session, members: list[TestCase], *, fail_fast: bool = False) -> TestSuite:
    with session.begin():
        return create_suite(
            session,
            created_by=None,
            name=f"suite-{uuid.uuid4().hex[:8]}",
            case_ids=[str(c.id) for c in members],
            tags=[],
            fail_fast=fail_fast,
        )


def run_suite(session: Session, suite: TestSuite) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A suite execution straight in the database; returns its id and its children's ids."""
    with session.begin():
        execution, children = create_suite_execution(
            session, suite=suite, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
            requested_by=None, actor="test",
        )  # fmt: skip
    return execution.id, [child_id for child_id, _ in children]


def claim_one(execution_id: uuid.UUID, worker: str = "w") -> int:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker=worker, lease_s=60)
    assert attempt is not None
    return attempt


def finish_one(execution_id: uuid.UUID, attempt: int, status: Status) -> None:
    with new_session() as s, s.begin():
        assert finish(s, execution_id, attempt=attempt, status=status, actor="test", summary={})


def run_member(execution_id: uuid.UUID, status: Status) -> None:
    finish_one(execution_id, claim_one(execution_id), status)


def suite_row(suite_execution_id: uuid.UUID) -> Execution:
    """The suite execution as committed now (read on a connection of its own)."""
    with new_session() as s:
        row = s.get(Execution, suite_execution_id)
        assert row is not None
        return row


def statuses(ids: list[uuid.UUID]) -> list[str]:
    with new_session() as s:
        found = dict(s.execute(select(Execution.id, Execution.status).where(Execution.id.in_(ids))).all())
    return [found[i] for i in ids]


def suite_transitions(suite_execution_id: uuid.UUID) -> list[tuple[str | None, str]]:
    with new_session() as s:
        rows = s.execute(
            select(ExecutionTransition.from_status, ExecutionTransition.to_status)
            .where(ExecutionTransition.execution_id == suite_execution_id)
            .order_by(ExecutionTransition.id)
        ).all()
    return [(r.from_status, r.to_status) for r in rows]


# --- CRUD -----------------------------------------------------------------------------------------


def test_a_maintainer_creates_reads_changes_and_deletes_a_suite(
    client: TestClient, session: Session, maintainer: Headers, auth: Callable[..., Headers]
) -> None:
    a, b = cases(session, 2)
    body = {
        "name": "nightly",
        "description": "everything",
        "case_ids": [str(a.id), str(b.id), str(a.id)],
        "tags": ["smoke"],
        "fail_fast": True,
        "default_priority": "HIGH",
    }
    r = client.post(SUITES, json=body, headers=maintainer)
    assert r.status_code == 201, r.text
    suite = r.json()
    assert r.headers["location"] == f"{SUITES}/{suite['id']}"
    assert suite["name"] == "nightly" and suite["description"] == "everything"
    assert suite["case_ids"] == [str(a.id), str(b.id)], "a repeated id is one member"
    assert suite["tags"] == ["smoke"] and suite["fail_fast"] is True
    assert suite["default_priority"] == "HIGH" and suite["version"] == 1

    viewer = auth(Role.VIEWER)
    assert client.get(f"{SUITES}/{suite['id']}", headers=viewer).json() == suite
    listed = client.get(SUITES, headers=viewer).json()
    assert [s["id"] for s in listed["items"]] == [suite["id"]] and listed["next_cursor"] is None

    r = client.patch(
        f"{SUITES}/{suite['id']}",
        json={"name": "nightly-2", "case_ids": [str(b.id)], "description": None, "fail_fast": False},
        headers=maintainer,
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["name"] == "nightly-2" and changed["case_ids"] == [str(b.id)]
    assert changed["description"] is None and changed["fail_fast"] is False
    assert changed["tags"] == ["smoke"] and changed["version"] == 2

    assert client.delete(f"{SUITES}/{suite['id']}", headers=maintainer).status_code == 204
    problem(client.get(f"{SUITES}/{suite['id']}", headers=viewer), 404)
    assert client.get(SUITES, headers=viewer).json()["items"] == []
    # The name is free again once the suite is deleted.
    again = client.post(SUITES, json={**body, "name": "nightly-2"}, headers=maintainer)
    assert again.status_code == 201, again.text


def test_only_maintainers_write_suites(
    client: TestClient, session: Session, auth: Callable[..., Headers]
) -> None:
    (a,) = cases(session, 1)
    before = count_rows()
    for role in (Role.VIEWER, Role.TESTER):
        problem(client.post(SUITES, json={"name": "x", "case_ids": [str(a.id)]}, headers=auth(role)), 403)
    problem(client.post(SUITES, json={"name": "x", "case_ids": [str(a.id)]}), 401)
    assert count_rows() == before


def test_a_duplicate_name_is_a_conflict_and_writes_nothing(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    (a,) = cases(session, 1)
    assert (
        client.post(SUITES, json={"name": "dup", "case_ids": [str(a.id)]}, headers=maintainer).status_code
        == 201
    )
    before = count_rows()
    problem(client.post(SUITES, json={"name": "dup", "tags": ["x"]}, headers=maintainer), 409, "body.name")
    assert count_rows() == before

    other = client.post(SUITES, json={"name": "other", "tags": ["x"]}, headers=maintainer).json()
    problem(
        client.patch(f"{SUITES}/{other['id']}", json={"name": "dup"}, headers=maintainer), 409, "body.name"
    )
    assert client.get(f"{SUITES}/{other['id']}", headers=maintainer).json()["name"] == "other"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "s"}, "body.case_ids"),
        ({"name": "s", "case_ids": [], "tags": []}, "body.case_ids"),
        ({"name": "s", "case_ids": ["UNKNOWN"]}, "body.case_ids"),
        ({"name": "s", "case_ids": ["not-a-uuid"]}, "body.case_ids.0"),
        ({"name": "", "tags": ["a"]}, "body.name"),
        ({"name": "s", "tags": ["bad tag"]}, "body.tags.0"),
        ({"name": "s", "tags": ["a"], "default_priority": "URGENT"}, "body.default_priority"),
        ({"name": "s", "tags": ["a"], "fail_fast": "sometimes"}, "body.fail_fast"),
        ({"name": "s", "tags": ["a"], "members": []}, "body.members"),
    ],
)
def test_invalid_suites_are_refused_naming_the_field_and_write_nothing(
    client: TestClient, session: Session, maintainer: Headers, body: dict[str, Any], field: str
) -> None:
    (a,) = cases(session, 1)
    if body.get("case_ids") == ["UNKNOWN"]:
        body = {**body, "case_ids": [str(a.id), str(uuid.uuid4())]}
    before = count_rows()
    problem(client.post(SUITES, json=body, headers=maintainer), 422, field)
    assert count_rows() == before


def test_a_deleted_case_is_no_valid_member(client: TestClient, session: Session, maintainer: Headers) -> None:
    (a,) = cases(session, 1)
    assert client.delete(f"/api/v1/test-cases/{a.id}", headers=maintainer).status_code == 204
    detail = problem(
        client.post(SUITES, json={"name": "s", "case_ids": [str(a.id)]}, headers=maintainer), 422
    )
    assert str(a.id) in detail["detail"]


def test_invalid_changes_are_refused_and_leave_the_suite_as_it_was(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    (a,) = cases(session, 1)
    suite = client.post(SUITES, json={"name": "keep", "case_ids": [str(a.id)]}, headers=maintainer).json()
    url = f"{SUITES}/{suite['id']}"
    problem(
        client.patch(url, json={"case_ids": [str(uuid.uuid4())]}, headers=maintainer), 422, "body.case_ids"
    )
    problem(client.patch(url, json={"case_ids": []}, headers=maintainer), 422, "body.case_ids")
    problem(client.patch(url, json={"name": None}, headers=maintainer), 422, "body.name")
    problem(client.patch(url, json={"fail_fast": None}, headers=maintainer), 422, "body.fail_fast")
    problem(client.patch(url, json={"version": 7}, headers=maintainer), 422, "body.version")
    assert client.get(url, headers=maintainer).json() == suite
    problem(client.patch(f"{SUITES}/{uuid.uuid4()}", json={"name": "x"}, headers=maintainer), 404)
    problem(client.delete(f"{SUITES}/{uuid.uuid4()}", headers=maintainer), 404)


# --- submission -------------------------------------------------------------------------------------


def test_submitting_a_suite_creates_it_and_its_children_together_and_publishes_the_children(
    client: TestClient, session: Session, maintainer: Headers, tester: Headers, redis_client: redis.Redis
) -> None:
    listed = cases(session, 3)
    tagged = cases(session, 2, tags=["smoke"])
    cases(session, 1, tags=["other"])
    suite = client.post(
        SUITES,
        json={
            "name": "mixed",
            "case_ids": [str(c.id) for c in listed],
            "tags": ["smoke"],
            "default_priority": "LOW",
        },
        headers=maintainer,
    ).json()
    before = count_rows()

    r = client.post(SUBMIT, json={"test_suite_id": suite["id"], "run_id": "build-9"}, headers=tester)
    assert r.status_code == 201, r.text
    execution = r.json()
    assert r.headers["location"] == f"{EXECUTIONS}/{execution['id']}"
    assert execution["status"] == "QUEUED" and execution["kind"] == "suite"
    assert execution["test_suite_id"] == suite["id"] and execution["test_case_id"] is None
    assert execution["priority"] == "LOW", "the suite's default priority"
    assert execution["correlation_id"] == execution["id"] == execution["root_execution_id"]
    assert execution["progress"] == {"total": 5, "done": 0, "by_status": {"QUEUED": 5}}

    after = count_rows()
    assert after["executions"] - before["executions"] == 1 + 5
    assert after["execution_transitions"] - before["execution_transitions"] == 1 + 5

    children = client.get(
        EXECUTIONS, params={"parent_execution_id": execution["id"], "limit": 100}, headers=tester
    ).json()["items"]
    assert sorted(c["test_case_id"] for c in children) == sorted(str(c.id) for c in listed + tagged)
    for child in children:
        assert child["trigger_kind"] == "child" and child["status"] == "QUEUED"
        assert child["correlation_id"] == execution["id"] and child["root_execution_id"] == execution["id"]
        assert child["run_id"] == "build-9" and child["priority"] == "LOW" and child["progress"] is None
        assert child["test_suite_id"] == suite["id"]
    # Only the children go to the workers; a suite execution never runs on one.
    assert sorted(published_ids(redis_client, "low")) == sorted(c["id"] for c in children)

    by_suite = client.get(EXECUTIONS, params={"test_suite_id": suite["id"], "limit": 100}, headers=tester)
    assert len(by_suite.json()["items"]) == 6
    by_kind = client.get(EXECUTIONS, params={"trigger_kind": "child", "limit": 100}, headers=tester)
    assert {e["id"] for e in by_kind.json()["items"]} == {c["id"] for c in children}
    shown = client.get(f"{EXECUTIONS}/{execution['id']}", headers=tester).json()
    assert shown["progress"] == execution["progress"]


def test_the_submitted_priority_overrides_the_suite_default(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    suite = suite_in_db(session, cases(session, 2))
    r = client.post(SUBMIT, json={"test_suite_id": str(suite.id), "priority": "CRITICAL"}, headers=tester)
    assert r.status_code == 201 and r.json()["priority"] == "CRITICAL"
    assert len(published_ids(redis_client, "critical")) == 2


def test_suite_submission_is_idempotent_with_a_key(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    suite = suite_in_db(session, cases(session, 3))
    body = {"test_suite_id": str(suite.id), "params": {"x": 1}}
    headers = {**tester, "Idempotency-Key": "nightly-2024-01-01"}
    first = client.post(SUBMIT, json=body, headers=headers)
    rows = count_rows()
    again = client.post(SUBMIT, json=body, headers=headers)
    assert first.status_code == 201 and again.status_code in (200, 201)
    assert again.json()["id"] == first.json()["id"] and again.headers.get("idempotent-replayed") == "true"
    assert count_rows() == rows
    assert len(published_ids(redis_client, "normal")) == 3, "the replay publishes nothing"
    problem(client.post(SUBMIT, json={**body, "priority": "HIGH"}, headers=headers), 422, "Idempotency-Key")
    assert count_rows() == rows


def test_submission_problems_name_the_field_and_write_nothing(
    client: TestClient, session: Session, tester: Headers, auth: Callable[..., Headers]
) -> None:
    suite = suite_in_db(session, cases(session, 1))
    before = count_rows()
    problem(
        client.post(SUBMIT, json={"test_suite_id": str(uuid.uuid4())}, headers=tester),
        404,
        "body.test_suite_id",
    )
    problem(client.post(SUBMIT, json={}, headers=tester), 422, "body.test_suite_id")
    problem(
        client.post(SUBMIT, json={"test_suite_id": str(suite.id), "priority": "ASAP"}, headers=tester),
        422,
        "body.priority",
    )
    problem(client.post(SUBMIT, json={"test_suite_id": str(suite.id)}, headers=auth(Role.VIEWER)), 403)
    assert count_rows() == before


def test_a_suite_whose_members_were_all_deleted_cannot_run(
    client: TestClient, session: Session, tester: Headers, maintainer: Headers
) -> None:
    (a,) = cases(session, 1)
    suite = suite_in_db(session, [a])
    client.delete(f"/api/v1/test-cases/{a.id}", headers=maintainer)
    before = count_rows()
    problem(
        client.post(SUBMIT, json={"test_suite_id": str(suite.id)}, headers=tester), 422, "body.test_suite_id"
    )
    assert count_rows() == before


def test_a_failure_after_the_expansion_leaves_no_row(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    """The last statement of the expansion fails: neither the suite nor any child remains."""
    members = cases(session, 4)
    suite = suite_in_db(session, members)
    before = count_rows()
    # The children's events are the expansion's last insert; refuse the one of the last child.
    session.execute(
        text(
            "CREATE FUNCTION anvil_test_refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.seq = 5 THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql; "
            "CREATE TRIGGER anvil_test_refuse BEFORE INSERT ON execution_events "
            "FOR EACH ROW EXECUTE FUNCTION anvil_test_refuse()"
        )
    )
    session.commit()
    try:
        r = client.post(SUBMIT, json={"test_suite_id": str(suite.id)}, headers=tester)
    finally:
        session.execute(
            text("DROP TRIGGER anvil_test_refuse ON execution_events; DROP FUNCTION anvil_test_refuse()")
        )
        session.commit()
    assert r.status_code == 500, r.text
    assert count_rows() == before
    assert published_ids(redis_client, "normal") == []


def test_the_expansion_is_one_transaction(session: Session) -> None:
    """Everything the expansion wrote goes when its transaction rolls back; nothing is seen before commit."""
    suite = suite_in_db(session, cases(session, 5))
    before = count_rows()
    with new_session() as writer:
        writer.begin()
        execution, children = create_suite_execution(
            writer, suite=suite, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
            requested_by=None, actor="test",
        )  # fmt: skip
        writer.flush()
        inside = writer.scalar(select(func.count()).select_from(Execution))
        assert inside == before["executions"] + 6
        assert count_rows() == before, "another connection sees nothing before the commit"
        writer.rollback()
    assert count_rows() == before


def test_a_thousand_case_suite_expands_in_well_under_a_second(session: Session) -> None:
    with session.begin():
        session.execute(
            insert(TestCase),
            [
                {"id": uuid.uuid4(), "name": f"bulk-{i:04d}", "kind": "generic",
                 "spec": generic_spec(["true"]), "tags": ["bulk"], "timeout_s": 60}
                for i in range(1000)
            ],
        )  # fmt: skip
        suite = create_suite(session, created_by=None, name="big", case_ids=[], tags=["bulk"])
    started = time.perf_counter()
    with session.begin():
        execution, children = create_suite_execution(
            session, suite=suite, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
            requested_by=None, actor="test",
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"\n1,000-case suite expanded and committed in {elapsed * 1000:.0f} ms")
    assert len(children) == 1000
    assert session.scalar(select(func.count()).where(Execution.parent_execution_id == execution.id)) == 1000
    assert elapsed < 2.0, f"expansion took {elapsed:.2f}s"


# --- settling -------------------------------------------------------------------------------------


def test_the_suite_runs_when_its_first_member_is_claimed(session: Session) -> None:
    suite_id, children = run_suite(session, suite_in_db(session, cases(session, 3)))
    assert suite_row(suite_id).status == "QUEUED"
    claim_one(children[0])
    row = suite_row(suite_id)
    assert row.status == "RUNNING" and row.started_at is not None
    assert row.summary == {"total": 3, "done": 0, "by_status": {"QUEUED": 2, "RUNNING": 1}}
    claim_one(children[1])
    assert suite_transitions(suite_id) == [(None, "QUEUED"), ("QUEUED", "RUNNING")]


@pytest.mark.parametrize(
    ("outcomes", "final"),
    [
        ([Status.PASSED, Status.PASSED, Status.SKIPPED], "PASSED"),
        ([Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT], "FAILED"),
        ([Status.PASSED, Status.ERROR, Status.TIMEOUT], "ERROR"),
        ([Status.PASSED, Status.TIMEOUT], "TIMEOUT"),
    ],
)
def test_the_suite_result_and_its_counts_by_status(
    session: Session, outcomes: list[Status], final: str
) -> None:
    suite_id, children = run_suite(session, suite_in_db(session, cases(session, len(outcomes))))
    for child_id, outcome in zip(children[:-1], outcomes[:-1], strict=True):
        run_member(child_id, outcome)
    assert suite_row(suite_id).status == "RUNNING"
    run_member(children[-1], outcomes[-1])
    row = suite_row(suite_id)
    assert row.status == final and row.finished_at is not None
    expected: dict[str, int] = {}
    for outcome in outcomes:
        expected[outcome.value] = expected.get(outcome.value, 0) + 1
    assert row.summary == {"total": len(outcomes), "done": len(outcomes), "by_status": expected}
    assert (row.error is None) == (final == "PASSED")


def finish_in_step(child_id: uuid.UUID, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    """Claim, wait for the other thread, then finish: both commits race for the suite."""
    try:
        attempt = claim_one(child_id, worker=f"w-{child_id}")
        barrier.wait(timeout=10)
        finish_one(child_id, attempt, Status.PASSED)
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
        barrier.abort()


def test_the_suite_finishes_exactly_once_when_its_last_two_members_finish_together(session: Session) -> None:
    members = cases(session, 3)
    for _ in range(20):
        suite_id, children = run_suite(session, suite_in_db(session, members))
        run_member(children[0], Status.PASSED)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=finish_in_step, args=(c, barrier, errors)) for c in children[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        row = suite_row(suite_id)
        assert row.status == "PASSED"
        assert row.summary == {"total": 3, "done": 3, "by_status": {"PASSED": 3}}
        assert suite_transitions(suite_id) == [
            (None, "QUEUED"),
            ("QUEUED", "RUNNING"),
            ("RUNNING", "PASSED"),
        ]


def test_fail_fast_cancels_the_members_not_started(session: Session) -> None:
    suite_id, children = run_suite(session, suite_in_db(session, cases(session, 5), fail_fast=True))
    failing = claim_one(children[0])
    still_running = claim_one(children[1])
    finish_one(children[0], failing, Status.FAILED)

    assert statuses(children) == ["FAILED", "RUNNING", "CANCELLED", "CANCELLED", "CANCELLED"]
    row = suite_row(suite_id)
    assert row.status == "RUNNING", "a member still running keeps the suite open"
    assert row.summary == {"total": 5, "done": 4, "by_status": {"CANCELLED": 3, "FAILED": 1, "RUNNING": 1}}

    finish_one(children[1], still_running, Status.PASSED)
    row = suite_row(suite_id)
    assert row.status == "FAILED"
    assert row.summary == {"total": 5, "done": 5, "by_status": {"CANCELLED": 3, "FAILED": 1, "PASSED": 1}}
    assert suite_transitions(suite_id)[-1] == ("RUNNING", "FAILED")


def test_without_fail_fast_a_failure_cancels_nothing(session: Session) -> None:
    suite_id, children = run_suite(session, suite_in_db(session, cases(session, 3)))
    run_member(children[0], Status.FAILED)
    assert statuses(children) == ["FAILED", "QUEUED", "QUEUED"]
    assert suite_row(suite_id).status == "RUNNING"


# --- trigger kinds and parents ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["case", "suite"])
@pytest.mark.parametrize("kind", ["retry", "child", "scheduled"])
def test_system_trigger_kinds_are_refused(
    client: TestClient, session: Session, tester: Headers, endpoint: str, kind: str
) -> None:
    (a,) = cases(session, 1)
    target = (
        {"test_case_id": str(a.id)}
        if endpoint == "case"
        else {"test_suite_id": str(suite_in_db(session, [a]).id)}
    )
    before = count_rows()
    detail = problem(
        client.post(f"{EXECUTIONS}/{endpoint}", json={**target, "trigger_kind": kind}, headers=tester),
        422,
        "body.trigger_kind",
    )
    assert kind in detail["detail"]
    assert count_rows() == before


@pytest.mark.parametrize("endpoint", ["case", "suite"])
@pytest.mark.parametrize("kind", ["repair", "agent"])
def test_repair_and_agent_need_an_existing_parent(
    client: TestClient,
    session: Session,
    tester: Headers,
    queued: Callable[..., uuid.UUID],
    endpoint: str,
    kind: str,
) -> None:
    (a,) = cases(session, 1)
    target = (
        {"test_case_id": str(a.id)}
        if endpoint == "case"
        else {"test_suite_id": str(suite_in_db(session, [a]).id)}
    )
    url = f"{EXECUTIONS}/{endpoint}"
    before = count_rows()
    problem(
        client.post(url, json={**target, "trigger_kind": kind}, headers=tester),
        422,
        "body.parent_execution_id",
    )
    unknown = {**target, "trigger_kind": kind, "parent_execution_id": str(uuid.uuid4())}
    problem(client.post(url, json=unknown, headers=tester), 422, "body.parent_execution_id")
    assert count_rows() == before

    # A parent that is itself part of a chain: the new execution joins the chain's correlation id.
    origin = queued()
    with session.begin():
        parent = create_execution(
            session, case=a, priority=Priority.NORMAL, trigger_kind=TriggerKind.API, requested_by=None,
            actor="test", parent_execution_id=origin, correlation_id=origin, root_execution_id=origin,
        )  # fmt: skip
    r = client.post(
        url, json={**target, "trigger_kind": kind, "parent_execution_id": str(parent.id)}, headers=tester
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["trigger_kind"] == kind and made["parent_execution_id"] == str(parent.id)
    assert made["correlation_id"] == str(origin)
    if endpoint == "case":
        # Its events join the stream of the tree it belongs to.
        assert made["root_execution_id"] == str(origin)
    else:
        # A suite execution stays the root its members are counted under; its children share the chain.
        assert made["root_execution_id"] == made["id"]
        children = client.get(EXECUTIONS, params={"parent_execution_id": made["id"]}, headers=tester).json()
        assert [c["correlation_id"] for c in children["items"]] == [str(origin)]


@pytest.mark.parametrize("kind", ["manual", "api", "ci"])
def test_other_caller_kinds_take_an_optional_parent(
    client: TestClient, session: Session, tester: Headers, queued: Callable[..., uuid.UUID], kind: str
) -> None:
    (a,) = cases(session, 1)
    alone = client.post(
        f"{EXECUTIONS}/case", json={"test_case_id": str(a.id), "trigger_kind": kind}, headers=tester
    )
    assert alone.status_code == 201 and alone.json()["parent_execution_id"] is None
    parent = queued()
    body = {"test_case_id": str(a.id), "trigger_kind": kind, "parent_execution_id": str(parent)}
    linked = client.post(f"{EXECUTIONS}/case", json=body, headers=tester)
    assert linked.status_code == 201, linked.text
    assert linked.json()["correlation_id"] == str(parent) == linked.json()["parent_execution_id"]
    listed = client.get(
        EXECUTIONS, params={"trigger_kind": kind, "parent_execution_id": str(parent)}, headers=tester
    )
    assert [e["id"] for e in listed.json()["items"]] == [linked.json()["id"]]


def test_a_savepoint_rolled_back_beside_a_members_finish_leaves_the_suite_settled(session: Session) -> None:
    """A failed savepoint (e.g. a second beat losing a schedule slot) undoes only its own work: the
    outer transaction's member finish still settles its suite at the commit."""
    from db.models import SchedulerLease
    from tests.helpers import make_suite_run

    run_id, (member,) = make_suite_run(session, 1)
    attempt = claim_one(member)
    with new_session() as s, s.begin():
        s.add(SchedulerLease(name="savepoint-test", holder="a", expires_at=func.now()))
    with new_session() as s, s.begin():
        assert finish(s, member, attempt=attempt, status=Status.PASSED, actor="test", summary={})
        with pytest.raises(IntegrityError):
            with s.begin_nested():
                s.execute(
                    insert(SchedulerLease).values(name="savepoint-test", holder="b", expires_at=func.now())
                )
    assert statuses([member]) == ["PASSED"]
    assert suite_row(run_id).status == "PASSED"
