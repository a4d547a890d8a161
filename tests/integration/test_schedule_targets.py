"""A schedule whose test case or suite is deleted is disabled, with a reason anyone can read, in the
same transaction as the delete (and by the tick, should it find a target gone); it cannot be enabled
again until it points at something that exists."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.migrate import downgrade, upgrade
from db.models import Execution
from db.session import make_engine, new_session
from tests.conftest import RUN, _drop, clone_database
from tests.integration.scheduling import case_in_db, sql, tick
from tests.integration.support import problem

Headers = dict[str, str]
SCHEDULES = "/api/v1/schedules"


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER, name="mia")


def create(client: TestClient, headers: Headers, **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"sched-{uuid.uuid4().hex[:6]}")
    body.setdefault("cron", "* * * * *")
    response = client.post(SCHEDULES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def slots_due(schedule_id: str) -> None:
    """As if the schedule was made minutes ago: its latest slot is due on the next tick."""
    sql(
        "UPDATE schedules SET created_at = now() - interval '3 minutes', "
        "updated_at = now() - interval '3 minutes' WHERE id = :id",
        id=uuid.UUID(schedule_id),
    )


def fired(schedule_id: str) -> int:
    with new_session() as s:
        return len(
            s.scalars(select(Execution.id).where(Execution.schedule_id == uuid.UUID(schedule_id))).all()
        )


def listed(client: TestClient, headers: Headers, schedule_id: str) -> dict[str, Any]:
    items = client.get(SCHEDULES, headers=headers).json()["items"]
    (found,) = [s for s in items if s["id"] == schedule_id]
    return found


def test_deleting_a_case_disables_its_schedules_with_a_reason_and_the_tick_leaves_them(
    client: TestClient,
    session: Session,
    maintainer: Headers,
    auth: Callable[..., Headers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = case_in_db(session, name="nightly-smoke")
    other = case_in_db(session)
    doomed = create(client, maintainer, test_case_id=str(case.id))
    paused = create(client, maintainer, test_case_id=str(case.id), enabled=False)
    unrelated = create(client, maintainer, test_case_id=str(other.id))
    assert doomed["enabled"] is True and doomed["disabled_reason"] is None

    with caplog.at_level(logging.WARNING, logger="anvil.schedules"):
        assert client.delete(f"/api/v1/test-cases/{case.id}", headers=maintainer).status_code == 204

    viewer = auth(Role.VIEWER)
    for schedule in (doomed, paused):
        shown = listed(client, viewer, schedule["id"])
        assert shown["enabled"] is False and shown["next_fire_times"] == []
        reason = shown["disabled_reason"]
        assert "test case 'nightly-smoke'" in reason and str(case.id) in reason
        assert "was deleted by mia" in reason
        assert any(schedule["id"] in r.getMessage() and "disabled" in r.getMessage() for r in caplog.records)
    assert client.get(f"{SCHEDULES}/{doomed['id']}", headers=viewer).json()["disabled_reason"] == reason
    assert listed(client, viewer, unrelated["id"])["enabled"] is True
    assert listed(client, viewer, unrelated["id"])["disabled_reason"] is None

    for schedule in (doomed, unrelated):
        slots_due(schedule["id"])
    tick()
    assert fired(doomed["id"]) == 0
    assert fired(unrelated["id"]) == 1


def test_deleting_a_suite_disables_its_schedules(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    cases = [case_in_db(session) for _ in range(2)]
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "nightly", "case_ids": [str(c.id) for c in cases]},
        headers=maintainer,
    ).json()
    schedule = create(client, maintainer, test_suite_id=suite["id"])
    assert client.delete(f"/api/v1/test-suites/{suite['id']}", headers=maintainer).status_code == 204
    shown = listed(client, maintainer, schedule["id"])
    assert shown["enabled"] is False
    assert "test suite 'nightly'" in shown["disabled_reason"] and "was deleted" in shown["disabled_reason"]
    slots_due(schedule["id"])
    tick()
    assert fired(schedule["id"]) == 0


def test_enabling_is_refused_while_the_target_is_missing_and_clears_the_reason_once_it_exists(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    case = case_in_db(session, name="old")
    replacement = case_in_db(session, name="new")
    schedule = create(client, maintainer, test_case_id=str(case.id))
    client.delete(f"/api/v1/test-cases/{case.id}", headers=maintainer)

    url = f"{SCHEDULES}/{schedule['id']}"
    body = problem(client.patch(url, json={"enabled": True}, headers=maintainer), 409, "body.enabled")
    assert "cannot be enabled" in body["detail"] and "'old'" in body["detail"]
    assert body["disabled_reason"] and "was deleted" in body["disabled_reason"]
    problem(client.patch(url, json={"enabled": True, "cron": "0 3 * * *"}, headers=maintainer), 409)
    still = client.get(url, headers=maintainer).json()
    assert (still["enabled"], still["cron"]) == (False, "* * * * *") and still["disabled_reason"]

    # Other changes are fine while it stays disabled; the reason stays until it is enabled.
    renamed = client.patch(url, json={"name": "renamed"}, headers=maintainer).json()
    assert renamed["name"] == "renamed" and renamed["disabled_reason"] == still["disabled_reason"]

    enabled = client.patch(
        url, json={"test_case_id": str(replacement.id), "enabled": True}, headers=maintainer
    )
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
    assert enabled.json()["next_fire_times"] != []


def test_the_tick_disables_a_schedule_whose_target_it_finds_gone(
    client: TestClient, session: Session, maintainer: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    case = case_in_db(session, name="vanished")
    schedule = create(client, maintainer, test_case_id=str(case.id))
    # Deleted without the API (as before this fix, or by hand): the schedule is still enabled.
    sql("UPDATE test_cases SET deleted_at = now() WHERE id = :id", id=case.id)
    slots_due(schedule["id"])
    with caplog.at_level(logging.WARNING, logger="anvil.schedules"):
        tick()
    assert fired(schedule["id"]) == 0
    shown = client.get(f"{SCHEDULES}/{schedule['id']}", headers=maintainer).json()
    assert shown["enabled"] is False
    assert (
        "test case 'vanished'" in shown["disabled_reason"]
        and "found by the scheduler" in shown["disabled_reason"]
    )
    assert any("disabled" in r.getMessage() and schedule["id"] in r.getMessage() for r in caplog.records)


def test_a_suite_with_no_live_members_passes_over_its_slot_without_stopping_other_schedules(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    member = case_in_db(session)
    suite = client.post(
        "/api/v1/test-suites", json={"name": "lonely", "case_ids": [str(member.id)]}, headers=maintainer
    ).json()
    empty = create(client, maintainer, test_suite_id=suite["id"])
    other = create(client, maintainer, test_case_id=str(case_in_db(session).id))
    client.delete(f"/api/v1/test-cases/{member.id}", headers=maintainer)
    slots_due(empty["id"])
    slots_due(other["id"])
    tick()
    assert fired(empty["id"]) == 0 and fired(other["id"]) == 1
    assert listed(client, maintainer, empty["id"])["enabled"] is True  # the suite itself still exists


CASE_ROW = (
    "INSERT INTO test_cases (id, name, kind, spec, tags, timeout_s, version, created_at, updated_at, "
    "deleted_at) VALUES (:id, :name, 'generic', '{}', '[]', 5, 1, now(), now(), :deleted_at)"
)
SCHEDULE_ROW = (
    "INSERT INTO schedules (id, name, cron, timezone, test_case_id, priority, enabled, overlap, params, "
    "created_at, updated_at) VALUES (:id, :name, '* * * * *', 'UTC', :case_id, 'NORMAL', true, 'skip', "
    "'{}', now(), now())"
)


def test_the_upgrade_disables_schedules_whose_target_was_already_deleted(template_db: str) -> None:
    name = f"anvil_mig0007_{RUN}"
    url = clone_database(name)
    try:
        downgrade(url, "0006")
        engine = make_engine(url)
        with engine.begin() as conn:
            for label, deleted_at in (("gone", datetime.now(UTC)), ("live", None)):
                case_id = uuid.uuid4()
                conn.execute(text(CASE_ROW), {"id": case_id, "name": label, "deleted_at": deleted_at})
                conn.execute(text(SCHEDULE_ROW), {"id": uuid.uuid4(), "name": label, "case_id": case_id})
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, enabled, disabled_reason FROM schedules")).all()
        engine.dispose()
        by_name = {row.name: (row.enabled, row.disabled_reason) for row in rows}
        assert by_name["live"] == (True, None)
        assert by_name["gone"][0] is False and "deleted" in by_name["gone"][1]
    finally:
        _drop(name)
