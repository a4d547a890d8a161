"""Cron schedules: the API (CRUD, validation, trigger) and the tick firing each slot exactly once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from db.models import Execution
from db.session import new_session
from scheduler.tick import run_tick
from tests.integration.scheduling import (
    case_in_db,
    children_of,
    claim_one,
    row,
    run_as_worker,
    sql,
    tick,
    transitions,
)
from tests.integration.support import count_rows, problem, published_ids

Headers = dict[str, str]
SCHEDULES = "/api/v1/schedules"


@pytest.fixture
def maintainer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MAINTAINER)


def create(client: TestClient, headers: Headers, **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"sched-{uuid.uuid4().hex[:6]}")
    body.setdefault("cron", "* * * * *")
    response = client.post(SCHEDULES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def fired(schedule_id: str) -> list[Execution]:
    """Executions the schedule started, oldest slot first."""
    with new_session() as s:
        rows = list(
            s.scalars(
                select(Execution)
                .where(Execution.schedule_id == uuid.UUID(schedule_id))
                .order_by(Execution.slot_at)
            )
        )
        s.expunge_all()
        return rows


def as_if_created_minutes_ago(schedule_id: str, minutes: int) -> None:
    """Move the schedule's creation back: the slots since then are due (the scheduler was not running)."""
    sql(
        "UPDATE schedules SET created_at = now() - make_interval(mins => :m), "
        "updated_at = now() - make_interval(mins => :m) WHERE id = :id",
        m=minutes,
        id=uuid.UUID(schedule_id),
    )


def latest_minute() -> datetime:
    (now,) = sql("SELECT now()")[0]
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def next_slot_arrives(schedule_id: str) -> None:
    """A minute passes: the slot fired earlier becomes the previous one (its run may still be going)."""
    ident = uuid.UUID(schedule_id)
    sql("UPDATE executions SET slot_at = slot_at - interval '1 minute' WHERE schedule_id = :id", id=ident)
    sql("UPDATE schedules SET last_slot_at = last_slot_at - interval '1 minute' WHERE id = :id", id=ident)


# ---- the API ---------------------------------------------------------------------------------------


def test_a_maintainer_creates_reads_changes_and_deletes_a_schedule(
    client: TestClient, session: Session, maintainer: Headers, auth: Callable[..., Headers]
) -> None:
    case = case_in_db(session)
    created = client.post(
        SCHEDULES,
        json={
            "name": "nightly",
            "cron": "0 2 * * *",
            "timezone": "Europe/Berlin",
            "test_case_id": str(case.id),
            "priority": "HIGH",
            "overlap": "cancel_previous",
            "params": {"env": "staging"},
        },
        headers=maintainer,
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert created.headers["location"] == f"{SCHEDULES}/{schedule['id']}"
    assert {
        k: schedule[k] for k in ("name", "cron", "timezone", "priority", "enabled", "overlap", "params")
    } == {
        "name": "nightly",
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "priority": "HIGH",
        "enabled": True,
        "overlap": "cancel_previous",
        "params": {"env": "staging"},
    }
    assert schedule["test_case_id"] == str(case.id) and schedule["test_suite_id"] is None
    assert schedule["last_slot_at"] is None
    times = [datetime.fromisoformat(t) for t in schedule["next_fire_times"]]
    assert len(times) == 5 and times == sorted(times) and times[0] > datetime.now(UTC) - timedelta(seconds=5)
    for t in times:  # 02:00 in Berlin, whatever the season
        local = t.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (2, 0)
    assert times[1] - times[0] in (timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))

    viewer = auth(Role.VIEWER)
    assert client.get(f"{SCHEDULES}/{schedule['id']}", headers=viewer).json()["name"] == "nightly"
    listed = client.get(SCHEDULES, headers=viewer).json()
    assert [s["id"] for s in listed["items"]] == [schedule["id"]] and listed["next_cursor"] is None

    patched = client.patch(
        f"{SCHEDULES}/{schedule['id']}", json={"cron": "*/15 * * * *", "timezone": "UTC"}, headers=maintainer
    )
    assert patched.status_code == 200, patched.text
    quarter = [datetime.fromisoformat(t) for t in patched.json()["next_fire_times"]]
    assert all(t.minute % 15 == 0 and t.second == 0 for t in quarter)
    assert [b - a for a, b in zip(quarter, quarter[1:], strict=False)] == [timedelta(minutes=15)] * 4

    paused = client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": False}, headers=maintainer).json()
    assert paused["enabled"] is False and paused["next_fire_times"] == []

    assert client.delete(f"{SCHEDULES}/{schedule['id']}", headers=maintainer).status_code == 204
    problem(client.get(f"{SCHEDULES}/{schedule['id']}", headers=viewer), 404)


def test_schedules_list_in_pages(client: TestClient, session: Session, maintainer: Headers) -> None:
    case = case_in_db(session)
    made = [create(client, maintainer, test_case_id=str(case.id))["id"] for _ in range(3)]
    first = client.get(SCHEDULES, params={"limit": 2}, headers=maintainer).json()
    second = client.get(
        SCHEDULES, params={"limit": 2, "cursor": first["next_cursor"]}, headers=maintainer
    ).json()
    assert second["next_cursor"] is None
    assert [s["id"] for s in first["items"] + second["items"]] == made[::-1]


def test_only_maintainers_write_schedules(
    client: TestClient, session: Session, auth: Callable[..., Headers], maintainer: Headers
) -> None:
    case = case_in_db(session)
    body = {"name": "x", "cron": "* * * * *", "test_case_id": str(case.id)}
    for role in (Role.VIEWER, Role.TESTER):
        problem(client.post(SCHEDULES, json=body, headers=auth(role)), 403)
    schedule = create(client, maintainer, test_case_id=str(case.id))
    problem(
        client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": False}, headers=auth(Role.TESTER)), 403
    )
    problem(client.delete(f"{SCHEDULES}/{schedule['id']}", headers=auth(Role.TESTER)), 403)
    problem(client.get(SCHEDULES), 401)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "* * * *"}, "body.cron"),
        ({"cron": "61 * * * *"}, "body.cron"),
        ({"cron": "0 0 31 2 *"}, "body.cron"),  # valid fields, but it never fires
        ({"cron": "@daily"}, "body.cron"),
        ({"cron": "*/5 * * * * *"}, "body.cron"),
        ({"timezone": "Mars/Olympus_Mons"}, "body.timezone"),
        ({"timezone": "../../etc/passwd"}, "body.timezone"),
        ({"timezone": ""}, "body.timezone"),
        ({"overlap": "sometimes"}, "body.overlap"),
        ({"priority": "URGENT"}, "body.priority"),
        ({"name": ""}, "body.name"),
        ({"colour": "red"}, "body.colour"),
        ({"test_case_id": None}, "body.test_case_id"),  # no target
        ({"test_suite_id": "SUITE"}, "body.test_case_id"),  # two targets
        ({"test_case_id": str(uuid.UUID(int=1))}, "body.test_case_id"),  # no such case
        ({"test_case_id": None, "test_suite_id": str(uuid.UUID(int=2))}, "body.test_suite_id"),
    ],
)
def test_invalid_schedules_are_refused_naming_the_field_and_write_nothing(
    client: TestClient, session: Session, maintainer: Headers, change: dict[str, Any], field: str
) -> None:
    case = case_in_db(session)
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": f"s-{uuid.uuid4().hex[:6]}", "case_ids": [str(case.id)]},
        headers=maintainer,
    ).json()
    body = {"name": "bad", "cron": "* * * * *", "test_case_id": str(case.id), **change}
    if body.get("test_suite_id") == "SUITE":
        body["test_suite_id"] = suite["id"]
    before = count_rows()
    problem(client.post(SCHEDULES, json=body, headers=maintainer), 422, field)
    assert count_rows() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "not a cron"}, "body.cron"),
        ({"cron": None}, "body.cron"),
        ({"timezone": "Nowhere/City"}, "body.timezone"),
        ({"enabled": None}, "body.enabled"),
        ({"test_case_id": None}, "body.test_case_id"),
        ({"test_suite_id": str(uuid.UUID(int=3))}, "body.test_suite_id"),
    ],
)
def test_invalid_changes_are_refused_and_leave_the_schedule_as_it_was(
    client: TestClient, session: Session, maintainer: Headers, change: dict[str, Any], field: str
) -> None:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id))
    problem(client.patch(f"{SCHEDULES}/{schedule['id']}", json=change, headers=maintainer), 422, field)
    assert client.get(f"{SCHEDULES}/{schedule['id']}", headers=maintainer).json() == schedule


def test_a_duplicate_name_is_a_conflict(client: TestClient, session: Session, maintainer: Headers) -> None:
    case_id = str(case_in_db(session).id)
    create(client, maintainer, name="dup", test_case_id=case_id)
    problem(
        client.post(
            SCHEDULES, json={"name": "dup", "cron": "* * * * *", "test_case_id": case_id}, headers=maintainer
        ),
        409,
        "body.name",
    )


def test_the_target_switches_between_case_and_suite(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    case = case_in_db(session)
    suite = client.post(
        "/api/v1/test-suites", json={"name": "to-suite", "case_ids": [str(case.id)]}, headers=maintainer
    ).json()
    schedule = create(client, maintainer, test_case_id=str(case.id))
    switched = client.patch(
        f"{SCHEDULES}/{schedule['id']}", json={"test_suite_id": suite["id"]}, headers=maintainer
    )
    assert switched.status_code == 200, switched.text
    assert (switched.json()["test_case_id"], switched.json()["test_suite_id"]) == (None, suite["id"])


# ---- the tick ----------------------------------------------------------------------------------------


def test_the_tick_fires_a_due_schedule_once_for_its_latest_slot(
    client: TestClient, session: Session, maintainer: Headers, redis_client: redis.Redis
) -> None:
    case = case_in_db(session)
    schedule = create(client, maintainer, name="every-minute", test_case_id=str(case.id), priority="LOW")
    assert tick().fired == 0  # created just now: its first slot is still ahead
    as_if_created_minutes_ago(schedule["id"], 10)  # the scheduler missed ten slots
    before = latest_minute()
    assert tick().fired == 1
    for _ in range(5):
        assert tick().fired == 0
    (execution,) = fired(schedule["id"])
    slot = execution.slot_at
    assert slot in (before, latest_minute())  # only the latest missed slot ran (a minute may turn meanwhile)
    assert (execution.trigger_kind, execution.priority, execution.status) == ("scheduled", "LOW", "QUEUED")
    assert execution.run_id == f"every-minute@{slot.isoformat()}"
    assert execution.test_case_id == case.id
    assert published_ids(redis_client, "low") == [str(execution.id)]
    shown = client.get(f"{SCHEDULES}/{schedule['id']}", headers=maintainer).json()
    assert datetime.fromisoformat(shown["last_slot_at"]) == slot
    listed = client.get(
        "/api/v1/executions", params={"trigger_kind": "scheduled"}, headers=maintainer
    ).json()["items"]
    assert [(e["schedule_id"], e["slot_at"]) for e in listed] == [(schedule["id"], shown["last_slot_at"])]


def test_two_beats_ticking_at_once_fire_each_slot_exactly_once(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    case_id = str(case_in_db(session).id)
    schedules = [create(client, maintainer, test_case_id=case_id, overlap="allow")["id"] for _ in range(5)]
    for schedule_id in schedules:
        as_if_created_minutes_ago(schedule_id, 3)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def beat(holder: str) -> None:
        try:
            for _ in range(5):
                barrier.wait(timeout=20)
                run_tick(holder=holder)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    # Two distinct beats (the lease picks one) and two threads sharing one beat's name (both act:
    # then only the row locks and the (schedule, slot) unique constraint keep a slot from running twice).
    threads = [threading.Thread(target=beat, args=(h,)) for h in ("beat-a", "beat-a", "beat-b", "beat-c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for schedule_id in schedules:
        assert len(fired(schedule_id)) == 1, schedule_id


def test_a_disabled_schedule_does_not_fire(client: TestClient, session: Session, maintainer: Headers) -> None:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), enabled=False)
    assert schedule["next_fire_times"] == []
    as_if_created_minutes_ago(schedule["id"], 5)
    assert tick().fired == 0
    assert fired(schedule["id"]) == []


def test_pausing_takes_effect_on_the_next_tick_and_resuming_does_not_make_up_missed_slots(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    # Hourly, down for two hours: a turn of the hour between two requests here is practically impossible.
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), cron="0 * * * *")
    as_if_created_minutes_ago(schedule["id"], 130)
    client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": False}, headers=maintainer)
    assert tick().fired == 0
    client.patch(f"{SCHEDULES}/{schedule['id']}", json={"enabled": True}, headers=maintainer)
    assert tick().fired == 0  # slots while paused are not made up; the next one is ahead
    assert fired(schedule["id"]) == []


def test_a_new_cron_takes_effect_on_the_next_tick(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), cron="0 0 1 1 *")
    as_if_created_minutes_ago(schedule["id"], 5)
    assert tick().fired == 0  # New Year only
    patched = client.patch(f"{SCHEDULES}/{schedule['id']}", json={"cron": "* * * * *"}, headers=maintainer)
    assert patched.status_code == 200
    as_if_created_minutes_ago(schedule["id"], 2)  # two minutes pass: nothing restarted
    before = latest_minute()
    assert tick().fired == 1
    (execution,) = fired(schedule["id"])
    assert execution.slot_at in (before, latest_minute())


# ---- overlap -------------------------------------------------------------------------------------------


def fire_twice(
    client: TestClient, session: Session, maintainer: Headers, overlap: str
) -> tuple[Execution, list[Execution]]:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), overlap=overlap)
    as_if_created_minutes_ago(schedule["id"], 2)
    assert tick().fired == 1
    (first,) = fired(schedule["id"])
    next_slot_arrives(schedule["id"])
    tick()
    return first, fired(schedule["id"])


def test_overlap_skip_passes_over_a_slot_while_the_previous_run_goes_on(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    first, runs = fire_twice(client, session, maintainer, "skip")
    assert [r.id for r in runs] == [first.id]
    (previous,) = runs
    shown = client.get(f"{SCHEDULES}/{previous.schedule_id}", headers=maintainer).json()
    # The new slot was passed over (recorded as done), never to be made up.
    assert previous.slot_at is not None
    assert datetime.fromisoformat(shown["last_slot_at"]) > previous.slot_at
    assert tick().fired == 0


def test_overlap_skip_fires_again_once_the_previous_run_finished(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), overlap="skip")
    as_if_created_minutes_ago(schedule["id"], 2)
    tick()
    (first,) = fired(schedule["id"])
    run_as_worker(first.id, Status.PASSED)
    next_slot_arrives(schedule["id"])
    assert tick().fired == 1
    assert len(fired(schedule["id"])) == 2


def test_overlap_allow_runs_both(client: TestClient, session: Session, maintainer: Headers) -> None:
    first, runs = fire_twice(client, session, maintainer, "allow")
    assert len(runs) == 2
    assert [r.status for r in runs] == ["QUEUED", "QUEUED"]


def test_overlap_cancel_previous_cancels_the_run_still_going(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    first, runs = fire_twice(client, session, maintainer, "cancel_previous")
    assert len(runs) == 2
    assert row(first.id).status == "CANCELLED"
    assert (transitions(first.id)[-1][2] or "").endswith(": a newer run started")
    assert runs[1].status == "QUEUED"


def test_overlap_cancel_previous_reaches_a_retry_of_the_previous_run(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    case = case_in_db(session, retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 600})
    schedule = create(client, maintainer, test_case_id=str(case.id), overlap="cancel_previous")
    as_if_created_minutes_ago(schedule["id"], 2)
    tick()
    (first,) = fired(schedule["id"])
    run_as_worker(first.id, Status.FAILED)  # RETRYING (finished) with its retry waiting
    (retry,) = children_of(first.id)
    assert row(retry.id).status == "SCHEDULED"
    next_slot_arrives(schedule["id"])
    assert tick().fired == 1
    assert row(retry.id).status == "CANCELLED"
    assert len(fired(schedule["id"])) == 2


def test_overlap_cancel_previous_asks_a_running_previous_run_to_stop(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    schedule = create(client, maintainer, test_case_id=str(case_in_db(session).id), overlap="cancel_previous")
    as_if_created_minutes_ago(schedule["id"], 2)
    tick()
    (first,) = fired(schedule["id"])
    claim_one(first.id)
    next_slot_arrives(schedule["id"])
    tick()
    assert row(first.id).cancel_requested_at is not None
    assert len(fired(schedule["id"])) == 2


# ---- trigger ---------------------------------------------------------------------------------------------


def test_trigger_runs_the_target_now_even_while_disabled(
    client: TestClient,
    session: Session,
    maintainer: Headers,
    auth: Callable[..., Headers],
    redis_client: redis.Redis,
) -> None:
    case = case_in_db(session)
    schedule = create(client, maintainer, test_case_id=str(case.id), enabled=False, priority="HIGH")
    tester = auth(Role.TESTER)
    response = client.post(f"{SCHEDULES}/{schedule['id']}/trigger", headers=tester)
    assert response.status_code == 201, response.text
    execution = response.json()
    assert response.headers["location"] == f"/api/v1/executions/{execution['id']}"
    assert (execution["trigger_kind"], execution["schedule_id"], execution["priority"]) == (
        "scheduled",
        schedule["id"],
        "HIGH",
    )
    assert execution["test_case_id"] == str(case.id) and execution["status"] == "QUEUED"
    slot = datetime.fromisoformat(execution["slot_at"])
    assert abs(slot - datetime.now(UTC)) < timedelta(seconds=30)
    assert published_ids(redis_client, "high") == [execution["id"]]
    again = client.post(f"{SCHEDULES}/{schedule['id']}/trigger", headers=tester)
    assert again.status_code == 201 and again.json()["id"] != execution["id"]  # each trigger is its own slot
    problem(client.post(f"{SCHEDULES}/{schedule['id']}/trigger", headers=auth(Role.VIEWER)), 403)
    problem(client.post(f"{SCHEDULES}/{uuid.uuid4()}/trigger", headers=tester), 404)


def test_trigger_of_a_suite_schedule_starts_the_suite(
    client: TestClient, session: Session, maintainer: Headers, redis_client: redis.Redis
) -> None:
    cases = [case_in_db(session) for _ in range(2)]
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "nightly-suite", "case_ids": [str(c.id) for c in cases]},
        headers=maintainer,
    ).json()
    schedule = create(client, maintainer, test_suite_id=suite["id"])
    response = client.post(f"{SCHEDULES}/{schedule['id']}/trigger", headers=maintainer)
    assert response.status_code == 201, response.text
    suite_execution = response.json()
    assert suite_execution["kind"] == "suite" and suite_execution["test_suite_id"] == suite["id"]
    members = children_of(uuid.UUID(suite_execution["id"]))
    assert len(members) == 2 and {m.status for m in members} == {"QUEUED"}
    assert sorted(published_ids(redis_client, "normal")) == sorted(str(m.id) for m in members)


def test_trigger_of_a_schedule_whose_case_was_deleted_is_a_conflict(
    client: TestClient, session: Session, maintainer: Headers
) -> None:
    case = case_in_db(session)
    schedule = create(client, maintainer, test_case_id=str(case.id))
    assert client.delete(f"/api/v1/test-cases/{case.id}", headers=maintainer).status_code == 204
    body = problem(client.post(f"{SCHEDULES}/{schedule['id']}/trigger", headers=maintainer), 409)
    assert "no longer exists" in body["detail"]
    as_if_created_minutes_ago(schedule["id"], 2)
    tick()  # the tick passes over it without failing
    assert fired(schedule["id"]) == []
