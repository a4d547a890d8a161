"""Quarantine on PostgreSQL: the API (roles, 4xx, audit), expiry (read time and the tick's duty), and
a suite whose member's only failing test is quarantined ending PASSED, run by the worker's own code
(workers.execute.execute, in this process: the test process is a real child process)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.states import Status
from anvil.errors import Conflict
from anvil.settings import get_settings
from db import quarantine
from db.models import Execution, StepTrace, Test, TestCase, TestQuarantineEvent, TestResult
from db.session import new_session
from db.suite_runs import create_suite_execution
from db.suites import create_suite
from scheduler import tick
from tests.helpers import create_execution, generic_spec, make_case
from tests.integration.support import problem

Headers = dict[str, str]


def q(test_id: uuid.UUID | str) -> str:
    return f"/api/v1/tests/{test_id}/quarantine"


def a_test(session: Session, case: TestCase | None = None, key: str = "tests/t.py::test_a") -> uuid.UUID:
    """A test as recording results makes it (the row appears the first time the test runs)."""
    case = case or make_case(session)
    now = datetime.now(UTC)
    with session.begin():
        test = Test(
            test_case_id=case.id, key=key, kind="pytest", name=key, file="tests/t.py",
            first_seen_at=now, last_seen_at=now,
        )  # fmt: skip
        session.add(test)
    return test.id


def events_of(client: TestClient, headers: Headers, test_id: uuid.UUID, **params: Any) -> dict[str, Any]:
    response = client.get(f"{q(test_id)}/events", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_maintainer_quarantines_updates_and_releases_a_test_and_every_change_is_audited(
    client: TestClient, auth: Callable[..., Headers], session: Session
) -> None:
    test_id = a_test(session)
    maintainer, viewer = auth(Role.MAINTAINER, "mia"), auth(Role.VIEWER)

    r = client.post(q(test_id), json={"reason": "  flaky on CI, JIRA-12  "}, headers=maintainer)
    assert r.status_code == 201, r.text
    state = r.json()
    assert state["id"] == str(test_id) and state["key"] == "tests/t.py::test_a"
    assert state["quarantined"] is True and state["quarantined_by"] == "mia"
    assert state["quarantine_reason"] == "flaky on CI, JIRA-12" and state["quarantine_expires_at"] is None
    since = state["quarantined_at"]

    # Again: the quarantine is updated (new reason, an expiry), not refused; it started when it started.
    r = client.post(
        q(test_id), json={"reason": "until the fix lands", "expires_in_days": 7}, headers=maintainer
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["quarantined_at"] == since and updated["quarantine_reason"] == "until the fix lands"
    expires = datetime.fromisoformat(updated["quarantine_expires_at"])
    assert timedelta(days=6.99) < expires - datetime.now(UTC) < timedelta(days=7.01)

    r = client.request("DELETE", q(test_id), json={"reason": "fixed in abc123"}, headers=maintainer)
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] is False and r.json()["quarantine_reason"] is None
    problem(client.delete(q(test_id), headers=maintainer), 409, "id")  # not quarantined any more

    # The audit, newest first, readable by anyone.
    audit = events_of(client, viewer, test_id)
    assert [(e["action"], e["actor"], e["reason"]) for e in audit["items"]] == [
        ("released", "mia", "fixed in abc123"),
        ("quarantined", "mia", "until the fix lands"),
        ("quarantined", "mia", "flaky on CI, JIRA-12"),
    ]
    assert (
        audit["items"][1]["expires_at"] == updated["quarantine_expires_at"] and audit["next_cursor"] is None
    )
    # Paged.
    first = events_of(client, viewer, test_id, limit=2)
    rest = events_of(client, viewer, test_id, limit=2, cursor=first["next_cursor"])
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in audit["items"]]
    assert rest["next_cursor"] is None

    # The reason of a release may come as a query parameter too.
    client.post(q(test_id), json={"reason": "again"}, headers=maintainer)
    r = client.delete(q(test_id), params={"reason": "done"}, headers=maintainer)
    assert r.status_code == 200 and events_of(client, viewer, test_id)["items"][0]["reason"] == "done"


def test_only_maintainers_change_a_quarantine(
    client: TestClient, auth: Callable[..., Headers], session: Session
) -> None:
    test_id = a_test(session)
    for role in (Role.VIEWER, Role.TESTER):
        problem(client.post(q(test_id), json={"reason": "x"}, headers=auth(role)), 403)
        problem(client.delete(q(test_id), headers=auth(role)), 403)
    problem(client.post(q(test_id), json={"reason": "x"}), 401)
    assert client.post(q(test_id), json={"reason": "x"}, headers=auth(Role.ADMIN)).status_code == 201
    with new_session() as s:
        assert [e.actor for e in s.scalars(select(TestQuarantineEvent))] == [
            next(iter(s.scalars(select(Test.quarantined_by))))
        ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.reason"),
        ({"reason": "   "}, "body.reason"),
        ({"reason": "x" * 2001}, "body.reason"),
        ({"reason": "x", "expires_at": "2001-01-01T00:00:00Z"}, "body.expires_at"),
        ({"reason": "x", "expires_at": "tomorrow"}, "body.expires_at"),
        ({"reason": "x", "expires_in_days": 0}, "body.expires_in_days"),
        ({"reason": "x", "expires_in_days": 99999}, "body.expires_in_days"),
        ({"reason": "x", "expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 1}, "body.expires_in_days"),
        ({"reason": "x", "until": "never"}, "body.until"),
    ],
)
def test_bad_quarantine_requests_are_422_naming_the_field(
    client: TestClient, auth: Callable[..., Headers], session: Session, body: dict[str, Any], field: str
) -> None:
    test_id = a_test(session)
    problem(client.post(q(test_id), json=body, headers=auth(Role.MAINTAINER)), 422, field)
    with new_session() as s:
        assert s.scalar(select(Test.quarantined_at)) is None
        assert list(s.scalars(select(TestQuarantineEvent))) == []


def test_unknown_tests_are_404_and_bad_ids_and_cursors_422(
    client: TestClient, auth: Callable[..., Headers], session: Session
) -> None:
    headers = auth(Role.MAINTAINER)
    unknown = uuid.uuid4()
    problem(client.post(q(unknown), json={"reason": "x"}, headers=headers), 404)
    problem(client.delete(q(unknown), headers=headers), 404)
    problem(client.get(f"{q(unknown)}/events", headers=headers), 404)
    problem(client.post(q("nope"), json={"reason": "x"}, headers=headers), 422)
    test_id = a_test(session)
    problem(client.get(f"{q(test_id)}/events", headers=headers, params={"cursor": "zz"}), 422, "query.cursor")
    assert events_of(client, headers, test_id, cursor="") == {"items": [], "next_cursor": None}


def test_an_expired_quarantine_no_longer_holds_and_the_tick_clears_it_as_system(
    client: TestClient, auth: Callable[..., Headers], session: Session
) -> None:
    case = make_case(session)
    expired, current = a_test(session, case, "t::old"), a_test(session, case, "t::new")
    headers = auth(Role.MAINTAINER)
    for test_id in (expired, current):
        assert (
            client.post(q(test_id), json={"reason": "r", "expires_in_days": 1}, headers=headers).status_code
            == 201
        )
    past = datetime.now(UTC) - timedelta(minutes=1)
    with new_session() as s, s.begin():
        s.execute(update(Test).where(Test.id == expired).values(quarantine_expires_at=past))
        now = datetime.now(UTC)
        assert quarantine.quarantined_keys(s, case.id, now=now) == {"t::new"}

    # Past its expiry it cannot be released: it is not quarantined.
    body = problem(client.delete(q(expired), headers=headers), 409)
    assert "expired" in body["detail"]

    tick._quarantine_sweep["next"] = 0.0  # the duty runs at most once a minute per beat process
    report = tick.run_tick(holder=f"t-{uuid.uuid4().hex[:6]}")
    assert report.quarantines_expired == 1
    assert tick.run_tick(holder="other").quarantines_expired == 0  # not the leader / not due
    with new_session() as s:
        rows = {t.key: t for t in s.scalars(select(Test))}
        assert rows["t::old"].quarantined_at is None and rows["t::old"].quarantine_reason is None
        assert rows["t::new"].quarantined_at is not None
    audit = events_of(client, headers, expired)["items"]
    assert (audit[0]["action"], audit[0]["actor"]) == ("expired", "system")
    assert datetime.fromisoformat(audit[0]["expires_at"]) == past

    # Quarantined again after its expiry: a new quarantine (201).
    assert client.post(q(expired), json={"reason": "still flaky"}, headers=headers).status_code == 201


def test_quarantining_past_an_expiry_the_tick_has_not_cleared_records_the_expiry_first(
    client: TestClient, auth: Callable[..., Headers], session: Session
) -> None:
    test_id = a_test(session)
    headers = auth(Role.MAINTAINER, "max")
    client.post(q(test_id), json={"reason": "a", "expires_in_days": 1}, headers=headers)
    with new_session() as s, s.begin():
        s.execute(update(Test).values(quarantine_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.post(q(test_id), json={"reason": "b"}, headers=headers).status_code == 201
    actions = [(e["action"], e["actor"]) for e in events_of(client, headers, test_id)["items"]]
    assert actions == [("quarantined", "max"), ("expired", "system"), ("quarantined", "max")]


# --- the worker masks a quarantined test's failure ------------------------------------------------


@pytest.fixture
def worker_here(tmp_path: Path) -> Iterator[None]:
    """Settings for running workers.execute.execute in this process: a workspace root with a
    ``demo`` workspace, and no sandbox (the test process still is a real child process)."""
    (tmp_path / "demo").mkdir()
    changes = {"ANVIL_WORKSPACE_ROOT": str(tmp_path), "ANVIL_SANDBOX": "off"}
    before = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def run_here(execution_id: uuid.UUID) -> str:
    from workers.execute import execute

    return execute(execution_id, worker="in-process")


def submit_case(session: Session, case: TestCase) -> uuid.UUID:
    with session.begin():
        execution = create_execution(
            session, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API, requested_by=None
        )
    return execution.id


def test_a_suite_whose_members_only_failure_is_a_quarantined_test_passes(
    client: TestClient, auth: Callable[..., Headers], session: Session, worker_here: None
) -> None:
    failing = make_case(session, name="checkout-smoke", spec=generic_spec(["false"], ["true"]))
    passing = make_case(session, spec=generic_spec(["true"]))
    # Its first run fails the usual way and makes the test known.
    assert run_here(submit_case(session, failing)) == "FAILED"
    with new_session() as s:
        test_id = s.scalars(select(Test.id).where(Test.test_case_id == failing.id)).one()
    r = client.post(q(test_id), json={"reason": "known outage"}, headers=auth(Role.MAINTAINER))
    assert r.status_code == 201, r.text

    with session.begin():
        suite = create_suite(
            session, created_by=None, name="nightly", case_ids=[str(failing.id), str(passing.id)]
        )
    with session.begin():
        run, members = create_suite_execution(
            session, suite=suite, priority=Priority.NORMAL, trigger_kind=TriggerKind.API,
            requested_by=None, actor="t",
        )  # fmt: skip
        run_id = run.id
    assert [run_here(member_id) for member_id, _ in members] == ["PASSED", "PASSED"]

    with new_session() as s:
        assert s.get(Execution, run_id).status == Status.PASSED.value  # type: ignore[union-attr]
        member = s.scalars(select(Execution).where(Execution.root_execution_id == run_id,
                                                   Execution.test_case_id == failing.id)).one()  # fmt: skip
        assert member.status == Status.PASSED.value and member.error is None
        assert member.summary["quarantined_failures"] == 1
        assert member.summary["quarantined"] == ["checkout-smoke"]
        assert member.summary["unmasked_status"] == "FAILED"
        assert "quarantined" in member.summary["quarantine_note"]
        steps = s.scalars(
            select(StepTrace).where(StepTrace.execution_id == member.id).order_by(StepTrace.seq)
        )
        assert [(st.status, st.details.get("quarantined")) for st in steps] == [
            ("failed", True),
            ("skipped", True),
        ]
        # History keeps the truth: the test failed, under quarantine.
        result = s.scalars(select(TestResult).where(TestResult.execution_id == member.id)).one()
        assert (result.status, result.quarantined) == ("failed", True)
        other = s.scalars(select(Execution).where(Execution.root_execution_id == run_id,
                                                  Execution.test_case_id == passing.id)).one()  # fmt: skip
        assert "quarantined_failures" not in other.summary


def test_a_released_test_fails_its_execution_again(
    client: TestClient, auth: Callable[..., Headers], session: Session, worker_here: None
) -> None:
    case = make_case(session, spec=generic_spec(["false"]))
    assert run_here(submit_case(session, case)) == "FAILED"
    with new_session() as s:
        test_id = s.scalars(select(Test.id)).one()
    headers = auth(Role.MAINTAINER)
    client.post(q(test_id), json={"reason": "r"}, headers=headers)
    assert run_here(submit_case(session, case)) == "PASSED"
    client.delete(q(test_id), headers=headers)
    assert run_here(submit_case(session, case)) == "FAILED"
    with new_session() as s:
        results = s.execute(select(TestResult.status, TestResult.quarantined).order_by(TestResult.id)).all()
        assert [tuple(r) for r in results] == [("failed", False), ("failed", True), ("failed", False)]


def test_a_manual_test_under_quarantine_passes_when_a_tester_fails_a_step(
    client: TestClient, auth: Callable[..., Headers], session: Session, worker_here: None
) -> None:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(), name="manual-login", kind="manual", tags=[], timeout_s=600,
            spec={"steps": [{"action": "log in", "expected": "welcome"}]},
        )  # fmt: skip
        session.add(case)
    tester = auth(Role.TESTER)

    def run_and_fail() -> dict[str, Any]:
        execution_id = submit_case(session, case)
        assert run_here(execution_id) == "PAUSED"
        assert client.post(f"/api/v1/executions/{execution_id}/assign", headers=tester).status_code == 200
        r = client.post(
            f"/api/v1/executions/{execution_id}/steps/1", json={"status": "failed"}, headers=tester
        )
        assert r.status_code == 200, r.text
        return dict(r.json()["execution"])

    assert run_and_fail()["status"] == "FAILED"
    with new_session() as s:
        test_id = s.scalars(select(Test.id)).one()
    client.post(q(test_id), json={"reason": "login page redesign"}, headers=auth(Role.MAINTAINER))
    execution = run_and_fail()
    assert execution["status"] == "PASSED"
    assert execution["summary"]["quarantined_failures"] == 1
    with new_session() as s:
        result = s.scalars(select(TestResult).order_by(TestResult.id.desc()).limit(1)).one()
        assert (result.status, result.quarantined) == ("failed", True)
        step = s.scalars(select(StepTrace).where(StepTrace.execution_id == uuid.UUID(execution["id"]))).one()
        assert step.details["quarantined"] is True


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_the_data_access_on_both_databases(request: pytest.FixtureRequest, database: str) -> None:
    s: Session = request.getfixturevalue("session" if database == "postgresql" else "sqlite_session")
    case = make_case(s)
    ids = {key: a_test(s, case, key) for key in ("t::a", "t::b", "t::c")}
    now = datetime.now(UTC)
    with s.begin():
        _, newly = quarantine.quarantine(s, ids["t::a"], reason="r", expires_at=None, actor="u", now=now)
        assert newly
        quarantine.quarantine(
            s, ids["t::b"], reason="r", expires_at=now + timedelta(seconds=5), actor="u", now=now
        )
        quarantine.quarantine(
            s, ids["t::c"], reason="r", expires_at=now + timedelta(days=1), actor="u", now=now
        )
        _, newly = quarantine.quarantine(s, ids["t::a"], reason="r2", expires_at=None, actor="v", now=now)
        assert not newly
    later = now + timedelta(seconds=10)
    with s.begin():
        assert quarantine.quarantined_keys(s, case.id, now=later) == {"t::a", "t::c"}
        assert quarantine.expire_due(s, now=later, limit=10) == 1
        assert quarantine.expire_due(s, now=later, limit=10) == 0
        quarantine.release(s, ids["t::c"], actor="u", now=later, reason="fixed")
        with pytest.raises(Conflict):
            quarantine.release(s, ids["t::c"], actor="u", now=later)
    with s.begin():
        assert quarantine.quarantined_keys(s, case.id, now=later) == {"t::a"}
        actions = {
            key: [e.action for e in quarantine.events(s, test_id, limit=10)] for key, test_id in ids.items()
        }
    assert actions == {
        "t::a": ["quarantined", "quarantined"],
        "t::b": ["expired", "quarantined"],
        "t::c": ["released", "quarantined"],
    }
