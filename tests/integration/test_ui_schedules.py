"""The schedules page in-process: the list (target, cron and zone, next fire time, paused or not,
the latest run), Pause / Resume / Trigger now, and the create and edit form, which the API's own
validation judges; roles and CSRF as the API and the rest of the interface have them."""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.policy import next_fire_times
from db.models import Execution, Schedule
from db.session import new_session
from tests.integration.scheduling import case_in_db
from tests.integration.ui_support import csrf_of, sign_in

Headers = dict[str, str]
MakeUser = Callable[[Role, str], str]


def text_of(response: Any) -> str:
    return html.unescape(response.text)


def make_schedule(client: TestClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin", **fields}
    response = client.post("/api/v1/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def schedule_row(schedule_id: str | uuid.UUID) -> Schedule:
    with new_session() as s:
        found = s.get(Schedule, uuid.UUID(str(schedule_id)))
        assert found is not None
        s.expunge(found)
        return found


def schedule_count() -> int:
    with new_session() as s:
        return int(s.scalar(select(func.count()).select_from(Schedule)) or 0)


def signed_in(client: TestClient, user: MakeUser, role: Role, name: str) -> str:
    """Sign ``name`` in with ``role``; the CSRF token of its pages."""
    user(role, name)
    assert sign_in(client, name).status_code == 303  # type: ignore[attr-defined]
    return csrf_of(client.get("/ui/schedules").text)


def form(target: str, **fields: str) -> dict[str, str]:
    return {
        "name": "smoke-hourly",
        "target_kind": "case",
        "target": target,
        "cron": "0 * * * *",
        "timezone": "UTC",
        "priority": "HIGH",
        "overlap": "allow",
        "enabled": "true",
        "params": '{"env": "staging"}',
        **fields,
    }


# ---- the list ----------------------------------------------------------------------------------------


def test_the_list_shows_target_cron_next_fire_time_state_and_the_latest_run(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    admin = auth(Role.ADMIN)
    case = case_in_db(session, name="checkout-smoke")
    nightly = make_schedule(client, admin, test_case_id=str(case.id))
    make_schedule(client, admin, name="weekly", cron="30 6 * * 1", timezone="UTC", test_case_id=str(case.id))
    fired = client.post(f"/api/v1/schedules/{nightly['id']}/trigger", headers=admin)
    assert fired.status_code == 201, fired.text
    signed_in(client, user, Role.MAINTAINER, "mona")

    page = client.get("/ui/schedules")
    assert page.status_code == 200
    text = text_of(page)
    row = text[text.index(f'data-id="{nightly["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "nightly" in row and "0 2 * * *" in row and "Europe/Berlin" in row
    assert f'href="/ui/cases/{case.id}">checkout-smoke<' in row
    (upcoming,) = next_fire_times(cron="0 2 * * *", tz="Europe/Berlin", now=datetime.now(UTC), count=1)
    assert upcoming.strftime("%Y-%m-%d %H:%M:%S UTC") in row
    assert f"{upcoming.astimezone(ZoneInfo('Europe/Berlin')):%Y-%m-%d} 02:00 Europe/Berlin" in row
    assert "active" in row
    assert f'href="/ui/executions/{fired.json()["id"]}"' in row  # the latest run, linked
    assert "QUEUED" in row
    weekly = text[text.index("weekly") :]
    assert "never" in weekly[: weekly.index("</tr>")]  # never fired
    for button in ("Trigger now", "Pause", "New schedule"):
        assert button in text


def test_pause_and_resume_from_the_page(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session)
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id))
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")

    paused = client.post(
        f"/ui/schedules/{schedule['id']}/pause", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert paused.status_code == 303 and paused.headers["location"] == "/ui/schedules"
    assert schedule_row(schedule["id"]).enabled is False
    page = text_of(client.get("/ui/schedules"))
    assert "paused" in page and "Resume" in page and f"/ui/schedules/{schedule['id']}/resume" in page

    resumed = client.post(
        f"/ui/schedules/{schedule['id']}/resume", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert resumed.status_code == 303
    assert schedule_row(schedule["id"]).enabled is True


def test_resuming_a_schedule_whose_case_was_deleted_says_why_it_cannot(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    admin = auth(Role.ADMIN)
    case = case_in_db(session, name="gone-case")
    schedule = make_schedule(client, admin, test_case_id=str(case.id))
    assert client.delete(f"/api/v1/test-cases/{case.id}", headers=admin).status_code == 204
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")
    listed = text_of(client.get("/ui/schedules"))
    assert "gone-case (deleted)" in listed and "was deleted by" in listed

    refused = client.post(f"/ui/schedules/{schedule['id']}/resume", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "cannot be enabled: its test case 'gone-case'" in text_of(refused)
    assert schedule_row(schedule["id"]).enabled is False


def test_trigger_now_lands_on_the_execution_it_started(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="on-demand")
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id), enabled=False)
    csrf = signed_in(client, user, Role.TESTER, "tess")  # testers may trigger (as the API says)

    fired = client.post(
        f"/ui/schedules/{schedule['id']}/trigger", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert fired.status_code == 303
    execution_id = uuid.UUID(fired.headers["location"].removeprefix("/ui/executions/"))
    with new_session() as s:
        execution = s.get(Execution, execution_id)
        assert execution is not None
        assert execution.schedule_id == uuid.UUID(schedule["id"]) and execution.trigger_kind == "scheduled"
        assert execution.status == "QUEUED"
    landed = client.get(fired.headers["location"])
    assert landed.status_code == 200 and "on-demand" in landed.text


def test_an_unknown_schedule_is_a_404_page(client: TestClient, user: MakeUser) -> None:
    csrf = signed_in(client, user, Role.ADMIN, "ada")
    assert client.get("/ui/schedules/not-an-id/edit").status_code == 404
    missing = uuid.uuid4()
    gone = client.post(f"/ui/schedules/{missing}/trigger", data={"csrf_token": csrf})
    assert gone.status_code == 404 and f"schedule {missing} does not exist" in gone.text


# ---- create and edit -----------------------------------------------------------------------------------


def test_a_maintainer_creates_a_schedule_from_the_form(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="smoke")
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")
    new = client.get("/ui/schedules/new")
    assert new.status_code == 200 and 'name="cron"' in new.text
    assert '<option value="smoke">' in new.text  # the case is offered while typing

    created = client.post(
        "/ui/schedules/new", data={"csrf_token": csrf, **form("smoke")}, follow_redirects=False
    )
    assert created.status_code == 303 and created.headers["location"] == "/ui/schedules"
    listed = client.get("/api/v1/schedules", headers=auth(Role.ADMIN)).json()["items"]
    assert len(listed) == 1
    got = listed[0]
    assert (got["name"], got["cron"], got["timezone"]) == ("smoke-hourly", "0 * * * *", "UTC")
    assert got["test_case_id"] == str(case.id) and got["test_suite_id"] is None
    assert (got["priority"], got["overlap"], got["enabled"]) == ("HIGH", "allow", True)
    assert got["params"] == {"env": "staging"}
    assert "smoke-hourly" in client.get("/ui/schedules").text


@pytest.mark.parametrize(
    ("change", "status", "message", "field"),
    [
        ({"cron": "61 * * * *"}, 422, "not a standard five-field cron expression", "cron"),
        ({"cron": "every night"}, 422, "not a standard five-field cron expression", "cron"),
        ({"timezone": "Mars/Olympus"}, 422, "'Mars/Olympus' is not an IANA time zone name", "timezone"),
        ({"target": "no-such-case"}, 422, "there is no test case named 'no-such-case'", "target"),
        ({"target": "smoke", "target_kind": "suite"}, 422, "there is no test suite named 'smoke'", "target"),
        ({"target": "00000000-0000-4000-8000-000000000000"}, 422, "does not exist", "target"),
        ({"params": "{not json"}, 422, "not JSON", "params"),
        ({"params": "[1, 2]"}, 422, "give a JSON object", "params"),
        ({"priority": "URGENT"}, 422, "Input should be", "priority"),
        ({"name": "taken"}, 409, "a schedule named 'taken' already exists", "name"),
    ],
)
def test_a_form_the_api_refuses_comes_back_with_its_message_and_nothing_is_written(
    client: TestClient,
    auth: Callable[..., Headers],
    session: Session,
    user: MakeUser,
    change: dict[str, str],
    status: int,
    message: str,
    field: str,
) -> None:
    case = case_in_db(session, name="smoke")
    make_schedule(client, auth(Role.ADMIN), name="taken", test_case_id=str(case.id))
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")
    before = schedule_count()

    refused = client.post("/ui/schedules/new", data={"csrf_token": csrf, **form("smoke"), **change})
    assert refused.status_code == status
    text = text_of(refused)
    assert (
        f'id="{field}-error">' in text
        and message in text.split(f'id="{field}-error">')[1].split("</span>")[0]
    )
    assert "The schedule was not saved" in text
    shown = {**form("smoke"), **change}
    assert f'value="{shown["name"]}"' in text  # what was typed is kept
    assert schedule_count() == before


def test_editing_changes_only_what_the_form_changed_and_a_bad_edit_writes_nothing(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    admin = auth(Role.ADMIN)
    case = case_in_db(session, name="smoke")
    other = case_in_db(session, name="regression")
    suite = client.post(
        "/api/v1/test-suites", json={"name": "full", "case_ids": [str(other.id)]}, headers=admin
    )
    assert suite.status_code == 201, suite.text
    schedule = make_schedule(client, admin, test_case_id=str(case.id), params={"env": "qa"})
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")

    page = client.get(f"/ui/schedules/{schedule['id']}/edit")
    assert page.status_code == 200
    assert (
        'value="nightly"' in page.text and 'value="smoke"' in page.text and 'value="0 2 * * *"' in page.text
    )
    edit = form("full", name="nightly", target_kind="suite", cron="0 3 * * *", timezone="Europe/Berlin")
    saved = client.post(
        f"/ui/schedules/{schedule['id']}/edit", data={"csrf_token": csrf, **edit}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    row = schedule_row(schedule["id"])
    assert (row.cron, row.timezone, row.priority, row.overlap) == (
        "0 3 * * *",
        "Europe/Berlin",
        "HIGH",
        "allow",
    )
    assert row.test_suite_id == uuid.UUID(suite.json()["id"]) and row.test_case_id is None
    assert row.params == {"env": "staging"}

    bad = client.post(
        f"/ui/schedules/{schedule['id']}/edit",
        data={"csrf_token": csrf, **edit, "cron": "0 4 * * *", "timezone": "Nowhere/Land"},
    )
    assert bad.status_code == 422 and "'Nowhere/Land' is not an IANA time zone name" in text_of(bad)
    assert schedule_row(schedule["id"]).cron == "0 3 * * *"  # nothing of the bad form was written


def test_an_unchanged_form_keeps_the_schedules_slot_bookkeeping(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="smoke")
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id))
    with new_session() as s, s.begin():
        found = s.get(Schedule, uuid.UUID(schedule["id"]))
        assert found is not None
        found.last_slot_at = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    csrf = signed_in(client, user, Role.MAINTAINER, "mona")
    same = form("smoke", name="nightly", cron="0  2 * * *", timezone="Europe/Berlin", priority="NORMAL")
    same.update(overlap="skip", params="{}")
    saved = client.post(
        f"/ui/schedules/{schedule['id']}/edit", data={"csrf_token": csrf, **same}, follow_redirects=False
    )
    assert saved.status_code == 303
    # Sending the cron again would count as new timing and forget the slot already fired.
    assert schedule_row(schedule["id"]).last_slot_at == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


# ---- roles and CSRF ------------------------------------------------------------------------------------


def test_a_viewer_sees_no_buttons_and_forged_posts_are_refused(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="smoke")
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id))
    csrf = signed_in(client, user, Role.VIEWER, "vera")
    page = client.get("/ui/schedules")
    assert page.status_code == 200 and "nightly" in page.text
    for button in ("Trigger now", "Pause", "New schedule", "/edit"):
        assert button not in page.text
    assert client.get("/ui/schedules/new").status_code == 403
    assert client.get(f"/ui/schedules/{schedule['id']}/edit").status_code == 403

    for action, role in (("pause", "maintainer"), ("resume", "maintainer"), ("trigger", "tester")):
        forged = client.post(f"/ui/schedules/{schedule['id']}/{action}", data={"csrf_token": csrf})
        assert (
            forged.status_code == 403
            and f"this needs the {role} role or higher; vera is viewer" in forged.text
        )
    created = client.post("/ui/schedules/new", data={"csrf_token": csrf, **form("smoke")})
    assert created.status_code == 403
    assert schedule_row(schedule["id"]).enabled is True and schedule_count() == 1
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(Execution)) == 0


def test_a_tester_may_trigger_but_not_pause_or_define(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="smoke")
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id))
    csrf = signed_in(client, user, Role.TESTER, "tess")
    page = client.get("/ui/schedules").text
    assert "Trigger now" in page and "Pause" not in page and "New schedule" not in page
    forged = client.post(f"/ui/schedules/{schedule['id']}/pause", data={"csrf_token": csrf})
    assert forged.status_code == 403 and "maintainer role or higher" in forged.text
    assert schedule_row(schedule["id"]).enabled is True


def test_a_post_without_its_csrf_token_is_refused(
    client: TestClient, auth: Callable[..., Headers], session: Session, user: MakeUser
) -> None:
    case = case_in_db(session, name="smoke")
    schedule = make_schedule(client, auth(Role.ADMIN), test_case_id=str(case.id))
    signed_in(client, user, Role.ADMIN, "ada")
    for path, data in (
        (f"/ui/schedules/{schedule['id']}/pause", {}),
        (f"/ui/schedules/{schedule['id']}/trigger", {"csrf_token": "f" * 64}),
        ("/ui/schedules/new", form("smoke")),
        (f"/ui/schedules/{schedule['id']}/edit", form("smoke", cron="5 5 * * *")),
    ):
        refused = client.post(path, data=data)
        assert refused.status_code == 403 and "Form refused" in refused.text, path
    row = schedule_row(schedule["id"])
    assert row.enabled is True and row.cron == "0 2 * * *" and schedule_count() == 1
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(Execution)) == 0


def test_the_latest_run_of_each_schedule_is_found_on_sqlite_standalone_mode(sqlite_session: Session) -> None:
    from db import schedules
    from tests.helpers import make_case

    case = make_case(sqlite_session, name="smoke")
    with sqlite_session.begin():
        fired = schedules.create_schedule(
            sqlite_session, created_by=None, name="often", cron="* * * * *", test_case_id=case.id
        )
        idle = schedules.create_schedule(
            sqlite_session, created_by=None, name="idle", cron="0 2 * * *", test_case_id=case.id
        )
    runs = []
    for _ in range(2):
        with sqlite_session.begin():
            execution, _published = schedules.trigger_now(sqlite_session, fired, actor="user:t")
            runs.append(execution.id)
    last = schedules.last_runs(sqlite_session, [fired.id, idle.id])
    assert list(last) == [fired.id] and last[fired.id].id == runs[-1]
    assert schedules.targets_of(sqlite_session, [fired]) == {case.id: ("smoke", False)}
