"""Webhooks on PostgreSQL: subscriptions over the API (4xx for bad input, maintainer and up), the
outbox written in the transaction of the event (nothing for a rolled-back finish), filters (statuses,
suites, only changes: newly failing and fixed), flaky and quarantine events, and the sender: signed
per the Standard Webhooks spec, retried after a failure, given up after the retry window, Slack and
Teams messages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.settings import Settings, get_settings
from db.models import Execution, Webhook, WebhookDelivery
from db.session import new_session
from db.types import utcnow
from scheduler.deliveries import deliver_due
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
from tests.webhook_receiver import Receiver

HOOKS = "/api/v1/webhooks"
Headers = dict[str, str]


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscribe(client: TestClient, headers: Headers, url: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        HOOKS, json={"url": url, "events": ["execution.finished"], **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliveries(webhook_id: str | None = None) -> list[WebhookDelivery]:
    with new_session() as s:
        statement = select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        if webhook_id:
            statement = statement.where(WebhookDelivery.webhook_id == uuid.UUID(webhook_id))
        return list(s.scalars(statement))


def send_round(settings: Settings | None = None) -> int:
    with httpx.Client(timeout=5) as client, ThreadPoolExecutor(2) as pool:
        return deliver_due(settings or get_settings(), client, pool)


def test_a_subscription_is_created_with_its_secret_shown_once_and_its_url_redacted(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    case = pytest_case(session)
    created = subscribe(
        client, maintainer, "https://hooks.slack.com/services/T000/B000/XXXX?x=1", format="slack",
        cases=[case.name], statuses=["FAILED", "ERROR"], only_changes=True,
    )  # fmt: skip
    assert created["secret"].startswith("whsec_")
    assert created["url"] == "https://hooks.slack.com/…"
    assert created["filters"] == {
        "case_ids": [str(case.id)], "statuses": ["FAILED", "ERROR"], "only_changes": True,
    }  # fmt: skip
    shown = client.get(f"{HOOKS}/{created['id']}", headers=maintainer).json()
    assert "secret" not in shown and shown["url"] == "https://hooks.slack.com/…"
    with new_session() as s:
        stored = s.get(Webhook, uuid.UUID(created["id"]))
        assert stored is not None
        assert "XXXX" not in stored.secret_encrypted and created["secret"] not in stored.secret_encrypted
    listed = client.get(HOOKS, headers=maintainer).json()["items"]
    assert [w["id"] for w in listed] == [created["id"]]
    changed = client.patch(
        f"{HOOKS}/{created['id']}", json={"enabled": False, "statuses": []}, headers=maintainer
    ).json()
    assert changed["enabled"] is False and changed["filters"] == {
        "case_ids": [str(case.id)], "only_changes": True,
    }  # fmt: skip
    assert client.delete(f"{HOOKS}/{created['id']}", headers=maintainer).status_code == 204
    assert client.get(f"{HOOKS}/{created['id']}", headers=maintainer).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["execution.finished"]}, "body.url"),
        ({"url": "https://example.com/x", "events": []}, "body.events"),
        ({"url": "https://example.com/x", "events": ["execution.started"]}, "body.events.0"),
        ({"url": "https://example.com/x", "events": ["execution.finished"], "format": "irc"}, "body.format"),
        (
            {"url": "https://example.com/x", "events": ["execution.finished"], "statuses": ["QUEUED"]},
            "body.statuses",
        ),
        (
            {"url": "https://example.com/x", "events": ["execution.finished"], "cases": ["no-such"]},
            "body.cases.0",
        ),
        ({"url": "https://example.com/x", "events": ["execution.finished"], "color": "red"}, "body.color"),
    ],
)
def test_bad_subscriptions_are_refused_with_a_422_naming_the_field(
    client: TestClient, maintainer: Headers, body: dict[str, Any], field: str
) -> None:
    problem(client.post(HOOKS, json=body, headers=maintainer), 422, field)
    assert deliveries() == [] and client.get(HOOKS, headers=maintainer).json()["items"] == []


def test_only_maintainers_and_admins_manage_webhooks(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    for role in (Role.VIEWER, Role.TESTER):
        assert client.get(HOOKS, headers=auth(role)).status_code == 403
        refused = client.post(HOOKS, json={"url": "https://x.example/h", "events": ["execution.finished"]},
                              headers=auth(role))  # fmt: skip
        assert refused.status_code == 403
    assert client.get(HOOKS, headers=auth(Role.ADMIN)).status_code == 200


def test_a_finished_suite_writes_one_delivery_per_subscription_in_its_own_transaction(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    a, b = pytest_case(session), pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [a, b], {"max_failures": 0})
    hooks = [subscribe(client, maintainer, f"https://h{i}.example/x") for i in range(2)]
    unrelated = subscribe(
        client, maintainer, "https://other.example/x", suites=[suite_with_gate(client, maintainer, [a], None)]
    )
    run = submit_suite(client, maintainer, suite_id)
    first, second = members_of(run)
    run_member(first, {"t.py::a": "passed", "t.py::b": "failed"})
    assert deliveries() == []  # a member finishing is not a run finishing
    open_session = run_member(second, {"t.py::c": "passed"}, commit=False)
    assert open_session is not None
    open_session.rollback()  # the suite's finish is rolled back: nothing to send
    open_session.close()
    assert deliveries() == []
    with new_session() as s, s.begin():
        attempt = s.scalar(select(Execution.attempt).where(Execution.id == second))
        assert attempt is not None and finish_with(s, second, attempt, {"t.py::c": "passed"})
    sent = deliveries()
    assert sorted(str(d.webhook_id) for d in sent) == sorted(h["id"] for h in hooks)
    assert deliveries(unrelated["id"]) == []
    data = sent[0].event["data"]
    assert sent[0].event["type"] == "execution.finished" and sent[0].event == sent[1].event
    assert data["execution_id"] == str(run) and data["kind"] == "suite" and data["status"] == "FAILED"
    assert data["counts"] == {
        "tests": 3,
        "passed": 2,
        "failed": 1,
        "errors": 0,
        "skipped": 0,
        "quarantined": 0,
    }
    assert data["failing_tests"] == ["t.py::b"] and data["change"] == "newly_failing"
    assert data["gate"]["status"] == "failed"


def test_only_changes_sends_newly_failing_and_fixed_runs(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    case = pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [case], None)
    hook = subscribe(client, maintainer, "https://h.example/x", suites=[suite_id], only_changes=True)
    failing_only = subscribe(client, maintainer, "https://f.example/x", statuses=["FAILED"])
    results = [
        {"t.py::a": "passed", "t.py::b": "passed"},  # first, passing: no change to tell
        {"t.py::a": "failed", "t.py::b": "passed"},  # newly failing
        {"t.py::a": "failed", "t.py::b": "failed"},  # still failing (b is new, the run is not)
        {"t.py::a": "passed", "t.py::b": "passed"},  # fixed
        {"t.py::a": "passed", "t.py::b": "passed"},  # still passing
    ]
    for outcomes in results:
        run_suite(client, maintainer, suite_id, [outcomes])
    told = [d.event["data"] for d in deliveries(hook["id"])]
    assert [(d["change"], d["status"], d["previous_status"]) for d in told] == [
        ("newly_failing", "FAILED", "PASSED"), ("fixed", "PASSED", "FAILED"),
    ]  # fmt: skip
    assert told[0]["newly_failing_tests"] == ["t.py::a"]
    assert [d.event["data"]["status"] for d in deliveries(failing_only["id"])] == ["FAILED", "FAILED"]
    assert [d.event["data"]["newly_failing_tests"] for d in deliveries(failing_only["id"])] == [
        ["t.py::a"], ["t.py::b"],
    ]  # fmt: skip


def test_quarantine_and_flakiness_are_sent_to_their_subscribers(
    client: TestClient, maintainer: Headers, session: Session
) -> None:
    case = pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [case], None)
    hook = subscribe(
        client, maintainer, "https://h.example/x", events=["test.flaky_detected", "test.quarantine_changed"]
    )
    run_suite(client, maintainer, suite_id, [{"t.py::a": "passed"}], revision="abc123")
    assert deliveries() == []
    run_suite(client, maintainer, suite_id, [{"t.py::a": "failed"}], revision="abc123")  # flaky now
    run_suite(client, maintainer, suite_id, [{"t.py::a": "failed"}], revision="abc123")  # told already
    (flaky,) = deliveries(hook["id"])
    assert flaky.event_type == "test.flaky_detected"
    assert flaky.event["data"]["test_name"] == "t.py::a" and flaky.event["data"]["case_name"] == case.name
    assert flaky.event["data"]["evidence"] == ["passed and failed on revision abc123"]
    test_id = flaky.event["data"]["test_id"]
    response = client.post(
        f"/api/v1/tests/{test_id}/quarantine", json={"reason": "flaky, JIRA-1"}, headers=maintainer
    )
    assert response.status_code == 201, response.text
    assert (
        client.request("DELETE", f"/api/v1/tests/{test_id}/quarantine", headers=maintainer).status_code == 200
    )
    changes = [d.event["data"] for d in deliveries(hook["id"]) if d.event_type == "test.quarantine_changed"]
    assert [(c["action"], c["reason"]) for c in changes] == [
        ("quarantined", "flaky, JIRA-1"),
        ("released", None),
    ]


def test_the_sender_signs_retries_and_logs_each_delivery(
    client: TestClient, maintainer: Headers, session: Session, receiver: Receiver
) -> None:
    hook = subscribe(client, maintainer, receiver.url)
    suite_id = suite_with_gate(client, maintainer, [pytest_case(session)], None)
    run = run_suite(client, maintainer, suite_id, [{"t.py::a": "passed"}])
    receiver.answer = 503  # the receiver is down
    assert send_round() == 1
    (delivery,) = deliveries(hook["id"])
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_status_code == 503
    assert timedelta(seconds=4) <= delivery.next_attempt_at - delivery.last_attempt_at <= timedelta(seconds=6)
    assert send_round() == 0  # not due yet
    with new_session() as s, s.begin():
        s.execute(update(WebhookDelivery).values(next_attempt_at=WebhookDelivery.created_at))
    receiver.answer = 200
    assert send_round() == 1
    (delivery,) = deliveries(hook["id"])
    assert delivery.status == "delivered" and delivery.attempts == 2 and delivery.last_status_code == 200
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.id)
    payload = second.verified(hook["secret"])
    assert payload["type"] == "execution.finished" and payload["data"]["execution_id"] == run["id"]
    log = client.get(f"{HOOKS}/{hook['id']}/deliveries", headers=maintainer).json()["items"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("delivered", 2, 200)]
    assert log[0]["last_latency_ms"] is not None
    assert client.get(f"{HOOKS}/{hook['id']}", headers=maintainer).json()["deliveries"] == {
        "pending": 0, "delivered": 1, "failed": 0,
    }  # fmt: skip


def test_a_delivery_is_given_up_after_the_retry_window_and_can_be_sent_again(
    client: TestClient, maintainer: Headers, session: Session, receiver: Receiver
) -> None:
    hook = subscribe(client, maintainer, receiver.url)
    queued = client.post(f"{HOOKS}/{hook['id']}/test", headers=maintainer)
    assert queued.status_code == 202
    receiver.answer = 500
    with new_session() as s, s.begin():  # the event is older than the retry window
        s.execute(update(WebhookDelivery).values(created_at=utcnow() - timedelta(hours=25)))
    assert send_round() == 1
    (delivery,) = deliveries(hook["id"])
    assert delivery.status == "failed" and delivery.attempts == 1
    assert send_round() == 0
    receiver.answer = 200
    again = client.post(f"{HOOKS}/{hook['id']}/deliveries/{delivery.id}/redeliver", headers=maintainer)
    assert again.status_code == 202
    assert send_round() == 1
    assert [d.status for d in deliveries(hook["id"])] == ["delivered"]
    assert receiver.accepted()[0].verified(hook["secret"])["type"] == "webhook.test"


def test_slack_and_teams_get_a_readable_message(
    client: TestClient, maintainer: Headers, session: Session, receiver: Receiver
) -> None:
    slack = subscribe(client, maintainer, receiver.url + "/slack", format="slack")
    teams = subscribe(client, maintainer, receiver.url + "/teams", format="teams")
    case = pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [case], None)
    run_suite(client, maintainer, suite_id, [{"t.py::a": "passed", "t.py::b": "passed"}], branch="main")
    run_suite(client, maintainer, suite_id, [{"t.py::a": "failed", "t.py::b": "passed"}], branch="main")
    while send_round():
        pass
    suite_name = client.get(f"/api/v1/test-suites/{suite_id}", headers=maintainer).json()["name"]
    title = f"Suite {suite_name}: FAILED (newly failing)"
    (to_slack,) = [r for r in receiver.accepted() if r.path == "/hook/slack" and title in r.body]
    to_slack.verified(slack["secret"])  # signed too
    text = to_slack.json()["text"]
    assert text.startswith(f"*{title}*")
    assert (
        "2 tests: 1 passed, 1 failed" in text and "Newly failing: `t.py::a`" in text and "branch main" in text
    )
    (to_teams,) = [r for r in receiver.accepted() if r.path == "/hook/teams" and title in r.body]
    card = to_teams.verified(teams["secret"])
    assert card["@type"] == "MessageCard" and card["title"] == title
    assert card["themeColor"] == "E01E5A"


def test_a_disabled_subscription_gets_nothing_until_enabled(
    client: TestClient, maintainer: Headers, session: Session, receiver: Receiver
) -> None:
    hook = subscribe(client, maintainer, receiver.url)
    client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False}, headers=maintainer)
    suite_id = suite_with_gate(client, maintainer, [pytest_case(session)], None)
    run_suite(client, maintainer, suite_id, [{"t.py::a": "passed"}])
    assert deliveries() == []  # not written for a disabled subscription
    client.post(f"{HOOKS}/{hook['id']}/test", headers=maintainer)
    assert send_round() == 0  # held while disabled
    client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}, headers=maintainer)
    assert send_round() == 1 and len(receiver.accepted()) == 1
