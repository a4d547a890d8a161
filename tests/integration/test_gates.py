"""Quality gates on PostgreSQL: the verdict written in the transaction that finishes a suite or a
sharded case (never for a rolled-back finish), new failures against the previous run on the same
branch, quarantined tests not counting, and gates refused with a 422 naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.shards import expected_durations, plan
from db.models import Execution, Test, TestCase
from db.session import new_session
from db.shard_runs import create_shards
from db.shard_tests import take
from tests.helpers import claim_attempt, create_execution
from tests.integration.runs import (
    finish_with,
    members_of,
    pytest_case,
    run_member,
    run_suite,
    submit_suite,
    suite_with_gate,
)
from tests.integration.support import problem

SUITES = "/api/v1/test-suites"
CASES = "/api/v1/test-cases"
EXECUTIONS = "/api/v1/executions"
Headers = dict[str, str]


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER)


def rules_failed(execution: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule"]: f for f in execution["gate"]["failed_rules"]}


def test_a_suites_gate_is_judged_when_it_finishes(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    a, b = pytest_case(session), pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [a, b], {"max_failures": 0, "min_tests": 3})
    assert client.get(f"{SUITES}/{suite_id}", headers=maintainer).json()["gate"] == {
        "max_failures": 0, "min_tests": 3,
    }  # fmt: skip
    run = submit_suite(client, maintainer, suite_id)
    first, second = members_of(run)
    run_member(first, {"t.py::a": "passed", "t.py::b": "failed"})
    unfinished = client.get(f"{EXECUTIONS}/{run}", headers=maintainer).json()
    assert unfinished["status"] == "RUNNING" and unfinished["gate"] is None
    run_member(second, {"t.py::c": "passed", "t.py::d": "skipped"})
    done = client.get(f"{EXECUTIONS}/{run}", headers=maintainer).json()
    assert done["status"] == "FAILED"
    assert done["gate"]["status"] == "failed"
    assert rules_failed(done) == {
        "max_failures": {"rule": "max_failures", "measured": 1, "limit": 0,
                         "message": "1 tests failed; at most 0 may fail"},
    }  # fmt: skip
    assert "min_tests" not in rules_failed(done)  # 3 ran (the skipped one does not count)
    assert done["gate"]["measured"]["tests"] == 3 and done["gate"]["measured"]["skipped"] == 1


def test_the_verdict_commits_with_the_suites_result_or_not_at_all(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    (a,) = [pytest_case(session)]
    suite_id = suite_with_gate(client, maintainer, [a], {"max_failures": 0})
    run = submit_suite(client, maintainer, suite_id)
    (member,) = members_of(run)
    open_session = run_member(member, {"t.py::a": "passed"}, commit=False)
    assert open_session is not None
    inside = open_session.execute(select(Execution.status, Execution.gate).where(Execution.id == run)).one()
    assert inside.status == "PASSED" and inside.gate["status"] == "passed"
    open_session.rollback()
    open_session.close()
    with new_session() as s:
        after = s.execute(select(Execution.status, Execution.gate).where(Execution.id == run)).one()
    assert after.status != "PASSED" and after.gate is None


def test_no_gate_leaves_the_verdict_null(client: TestClient, maintainer: Headers, session: Session) -> None:
    suite_id = suite_with_gate(client, maintainer, [pytest_case(session)], None)
    done = run_suite(client, maintainer, suite_id, [{"t.py::a": "failed"}])
    assert done["status"] == "FAILED" and done["gate"] is None


def test_a_submissions_gate_replaces_the_suites(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    suite_id = suite_with_gate(client, maintainer, [pytest_case(session)], {"max_failures": 0})
    done = run_suite(
        client, maintainer, suite_id, [{"t.py::a": "failed", "t.py::b": "passed", "t.py::c": "passed"}],
        gate={"min_pass_rate": 60},
    )  # fmt: skip
    assert done["gate"]["rules"] == {"min_pass_rate": 60}
    assert done["gate"]["status"] == "passed" and done["gate"]["measured"]["pass_rate"] == 66.66


def test_new_failures_are_those_the_previous_run_on_the_branch_did_not_have(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    a, b = pytest_case(session), pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [a, b], {"no_new_failures": True})
    first = run_suite(client, maintainer, suite_id, [{"t.py::old": "failed"}, {"t.py::x": "passed"}])
    assert rules_failed(first)["no_new_failures"]["measured"] == 1  # no previous run: every failure is new
    assert first["gate"]["measured"]["compared_with"] is None
    second = run_suite(client, maintainer, suite_id, [{"t.py::old": "failed"}, {"t.py::x": "failed"}])
    assert second["gate"]["status"] == "failed"
    assert second["gate"]["measured"]["compared_with"] == first["id"]
    assert second["gate"]["measured"]["new_failing_tests"] == ["t.py::x"]
    third = run_suite(client, maintainer, suite_id, [{"t.py::old": "failed"}, {"t.py::x": "failed"}])
    assert third["gate"]["status"] == "passed"  # the same failures as the run before
    other_branch = run_suite(
        client, maintainer, suite_id, [{"t.py::old": "failed"}, {"t.py::x": "passed"}], branch="feature/y"
    )
    assert other_branch["gate"]["measured"]["compared_with"] is None


def test_quarantined_tests_do_not_count(client: TestClient, maintainer: Headers, session: Session) -> None:
    case = pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [case], {"max_failures": 0, "min_pass_rate": 100})
    run_suite(client, maintainer, suite_id, [{"t.py::shaky": "passed", "t.py::ok": "passed"}])
    with new_session() as s, s.begin():
        s.execute(
            update(Test)
            .where(Test.test_case_id == case.id, Test.key == "t.py::shaky")
            .values(quarantined_at=datetime.now(UTC), quarantined_by="t", quarantine_reason="flaky")
        )
    done = run_suite(client, maintainer, suite_id, [{"t.py::shaky": "failed", "t.py::ok": "passed"}])
    assert done["gate"]["status"] == "passed"
    assert done["gate"]["measured"]["quarantined"] == 1 and done["gate"]["measured"]["tests"] == 1


def test_a_sharded_cases_gate_counts_every_shards_tests(session: Session) -> None:
    spec = {"workspace": "demo", "args": [], "shards": 2, "gate": {"max_failures": 0}}
    case = pytest_case(session, spec=spec)
    keys = [f"t.py::test_{i}" for i in range(6)]
    with new_session() as s, s.begin():
        parent_id = create_execution(
            s, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API, requested_by=None
        ).id
    with new_session() as s, s.begin():
        held = claim_attempt(s, parent_id, worker="w1", lease_s=30)
    assert held is not None
    with new_session() as s, s.begin():
        shards = create_shards(
            s, parent_id, attempt=held, shards=plan(keys, {}, 2), durations=expected_durations(keys, {}),
            requested=2, actor="test",
        )  # fmt: skip
    for index, (shard_id, _) in enumerate(shards, start=1):
        with new_session() as s, s.begin():
            attempt = claim_attempt(s, shard_id, worker="w2", lease_s=30)
        assert attempt is not None
        taken: list[str] = []
        with new_session() as s, s.begin():
            while more := take(s, parent_id, shard_id=shard_id, attempt=attempt, index=index):
                taken += more
        outcomes = {k: ("failed" if k == "t.py::test_3" else "passed") for k in taken}
        with new_session() as s, s.begin():
            assert finish_with(s, shard_id, attempt, outcomes)
    with new_session() as s:
        parent = s.get_one(Execution, parent_id)
    assert parent.status == "FAILED"
    assert parent.gate is not None and parent.gate["status"] == "failed"
    assert parent.gate["measured"]["tests"] == 6 and parent.gate["measured"]["failed"] == 1


def test_a_case_run_alone_is_judged_with_its_retry(session: Session) -> None:
    case = pytest_case(session, spec={"workspace": "demo", "args": ["tests"], "gate": {"max_failures": 0}})
    with session.begin():
        case.retry_policy = {"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.01, "jitter": 0}
    with new_session() as s, s.begin():
        first = create_execution(
            s, case=s.get_one(TestCase, case.id), priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
            requested_by=None, retry_policy=case.retry_policy,
        ).id  # fmt: skip
    run_member(first, {"t.py::a": "failed", "t.py::b": "passed"})
    with new_session() as s:
        assert s.get_one(Execution, first).gate is None  # RETRYING: not over yet
        retry = s.scalars(select(Execution.id).where(Execution.parent_execution_id == first)).one()
        s.execute(update(Execution).where(Execution.id == retry).values(status="QUEUED"))
        s.commit()
    run_member(retry, {"t.py::a": "passed", "t.py::b": "passed"})
    with new_session() as s:
        verdict = s.get_one(Execution, first).gate
    assert verdict is not None and verdict["status"] == "passed"
    assert verdict["measured"]["tests"] == 2 and verdict["measured"]["passed"] == 2


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ({}, "body.gate.max_failures"),
        ({"min_pass_rate": 150}, "body.gate.min_pass_rate"),
        ({"max_failures": -1}, "body.gate.max_failures"),
        ({"max_duration": 60}, "body.gate.max_duration"),
    ],
)
def test_bad_gates_are_422s_naming_the_field(
    client: TestClient, maintainer: Headers, session: Session, gate: dict[str, Any], field: str
) -> None:
    case = pytest_case(session)
    body = {"name": f"s-{uuid.uuid4().hex[:6]}", "case_ids": [str(case.id)], "gate": gate}
    problem(client.post(SUITES, json=body, headers=maintainer), 422, field)
    suite_id = suite_with_gate(client, maintainer, [case], None)
    submission = {"test_suite_id": suite_id, "gate": gate}
    problem(client.post(f"{EXECUTIONS}/suite", json=submission, headers=maintainer), 422, field)
    problem(client.patch(f"{SUITES}/{suite_id}", json={"gate": gate}, headers=maintainer), 422, field)


def test_a_gate_on_a_case_that_is_not_pytest_or_bdd_is_refused(
    client: TestClient, maintainer: Headers, case: TestCase
) -> None:
    body = {"test_case_id": str(case.id), "gate": {"max_failures": 0}}
    detail = problem(client.post(f"{EXECUTIONS}/case", json=body, headers=maintainer), 422, "body.gate")
    assert "generic" in detail["detail"]


def test_a_pytest_specs_gate_is_checked(client: TestClient, maintainer: Headers) -> None:
    body = {
        "name": f"py-{uuid.uuid4().hex[:6]}", "kind": "pytest",
        "spec": {"workspace": "demo", "args": ["tests"], "gate": {"min_tests": 0}},
    }  # fmt: skip
    problem(client.post(CASES, json=body, headers=maintainer), 422, "body.spec.gate.min_tests")
    body["spec"]["gate"] = {"min_tests": 10}  # type: ignore[index]
    made = client.post(CASES, json=body, headers=maintainer)
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["gate"]["min_tests"] == 10


def test_a_suites_gate_is_changed_and_cleared_with_patch(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    suite_id = suite_with_gate(client, maintainer, [pytest_case(session)], None)
    url = f"{SUITES}/{suite_id}"
    gate = {"min_pass_rate": 99.5, "no_new_failures": False}
    changed = client.patch(url, json={"gate": gate}, headers=maintainer)
    assert changed.status_code == 200, changed.text
    assert changed.json()["gate"] == {"min_pass_rate": 99.5}  # only the rules checked are kept
    cleared = client.patch(url, json={"gate": None}, headers=maintainer)
    assert cleared.status_code == 200 and cleared.json()["gate"] is None
