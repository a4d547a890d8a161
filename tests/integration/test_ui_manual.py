"""Manual testing in the web interface, in-process: the queue, taking a test, recording its steps
in order to its final status, releasing it, a second tester, a viewer, CSRF and bad input (the
browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from db.models import Execution, ManualStepResult, StepTrace, TestCase, User
from db.session import new_session
from tests.helpers import create_execution
from tests.integration.ui_support import csrf_of, sign_in

STEPS = [
    {"action": "Open the login page", "expected": "The form is shown"},
    {"action": "Log in as alice", "expected": "The dashboard greets alice"},
    {"action": "Log out", "expected": "Back on the login page"},
]


def manual_case(session: Session, name: str) -> TestCase:
    spec = {"instructions": "Use the staging site.", "steps": STEPS}
    with session.begin():
        case = TestCase(id=uuid.uuid4(), name=name, kind="manual", spec=spec, tags=[], timeout_s=600)
        session.add(case)
    return case


def paused(session: Session, name: str, priority: Priority = Priority.NORMAL) -> uuid.UUID:
    """A manual execution a worker (run in this process) handed to testers: PAUSED, steps not run."""
    from workers.execute import execute

    case = manual_case(session, name)
    with session.begin():
        execution = create_execution(
            session,
            case=case,
            priority=priority,
            trigger_kind=TriggerKind.API,
            requested_by=None,
        )
    assert execute(execution.id, worker="in-process") == "PAUSED"
    return execution.id


def state(execution_id: uuid.UUID) -> tuple[str, uuid.UUID | None, list[str], int]:
    """Status, assignee, the steps' statuses and how many step results were ever recorded."""
    with new_session() as s:
        execution = s.get(Execution, execution_id)
        assert execution is not None
        steps = s.scalars(
            select(StepTrace.status).where(StepTrace.execution_id == execution_id).order_by(StepTrace.seq)
        )
        records = s.scalar(
            select(func.count())
            .select_from(ManualStepResult)
            .where(ManualStepResult.execution_id == execution_id)
        )
        return execution.status, execution.assigned_to, list(steps), records or 0


def user_id(name: str) -> uuid.UUID:
    with new_session() as s:
        found = s.scalar(select(User.id).where(User.username == name))
        assert found is not None
        return found


def section(html: str, heading: str) -> str:
    """The part of the queue page under one of its headings (up to the next one)."""
    start = html.index(heading)
    after = html.find("<h2", start)
    return html[start : after if after != -1 else len(html)]


def take(client: TestClient, execution_id: uuid.UUID) -> None:
    page = client.get(f"/ui/manual/{execution_id}")
    response = client.post(
        f"/ui/manual/{execution_id}/take", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == f"/ui/manual/{execution_id}"


def record(
    client: TestClient, execution_id: uuid.UUID, seq: int, status: str, **fields: str
) -> tuple[int, str]:
    csrf = csrf_of(client.get(f"/ui/manual/{execution_id}").text)
    response = client.post(
        f"/ui/manual/{execution_id}/steps/{seq}",
        data={"csrf_token": csrf, "status": status, **fields},
        follow_redirects=False,
    )
    return response.status_code, response.text


@pytest.fixture
def tester(client: TestClient, user: Callable[[Role, str], str]) -> TestClient:
    sign_in(client, user(Role.TESTER, "tess"))
    return client


def test_the_queue_lists_waiting_tests_highest_priority_first_and_refreshes_itself(
    tester: TestClient, session: Session
) -> None:
    low = paused(session, "checkout by hand", Priority.LOW)
    high = paused(session, "login by hand", Priority.HIGH)
    page = tester.get("/ui/manual")
    assert page.status_code == 200
    waiting = section(page.text, "Waiting for a tester")
    assert waiting.index(str(high)) < waiting.index(str(low))  # as GET /api/v1/manual/queue
    assert "login by hand" in waiting and "HIGH" in waiting and "Take login by hand" in waiting
    assert 'hx-get="/ui/manual/rows"' in page.text and 'hx-trigger="every 3s"' in page.text
    rows = tester.get("/ui/manual/rows")
    assert rows.status_code == 200 and "<html" not in rows.text
    assert str(high) in section(rows.text, "Waiting for a tester")


def test_a_tester_takes_a_test_and_records_its_steps_in_order_to_passed(
    tester: TestClient, session: Session
) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    page = tester.get(f"/ui/manual/{execution_id}").text
    assert "You are performing this test" in page and "Use the staging site." in page
    assert "The dashboard greets alice" in page  # every step's action and expected result
    assert "Record step 1" in page and "Record step 2" not in page  # only the current step's form
    queue = tester.get("/ui/manual").text
    assert str(execution_id) in section(queue, "Taken by me")
    assert str(execution_id) not in section(queue, "Waiting for a tester")

    code, text = record(tester, execution_id, 2, "passed")
    assert code == 409 and "record steps in order: step 1 has no result yet" in text
    assert state(execution_id)[2:] == (["not_run"] * 3, 0)

    for seq, actual in ((1, "form shown"), (2, "Hello, alice"), (3, "login page again")):
        code, text = record(tester, execution_id, seq, "passed", actual=actual, comment="")
        assert code == 303, text
        page = tester.get(f"/ui/manual/{execution_id}").text
        assert actual in page
    assert "This test is finished" in page and "PASSED" in page and "Record step" not in page
    assert state(execution_id) == ("PASSED", user_id("tess"), ["passed"] * 3, 3)
    with new_session() as s:
        details = s.scalars(
            select(StepTrace.details).where(StepTrace.execution_id == execution_id).order_by(StepTrace.seq)
        ).all()
    assert [d["actual"] for d in details] == ["form shown", "Hello, alice", "login page again"]
    assert {d["recorded_by"] for d in details} == {"tess"}


def test_a_failed_step_fails_the_test(tester: TestClient, session: Session) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    assert record(tester, execution_id, 1, "passed")[0] == 303
    assert record(tester, execution_id, 2, "failed", actual="error 500", comment="ticket 42")[0] == 303
    assert record(tester, execution_id, 3, "passed")[0] == 303
    page = tester.get(f"/ui/manual/{execution_id}").text
    assert "This test is finished" in page and "FAILED" in page and "step 2 failed" in page
    assert "error 500" in page and "ticket 42" in page
    assert state(execution_id)[0] == "FAILED"


def test_releasing_puts_the_test_back_in_the_queue(tester: TestClient, session: Session) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    assert record(tester, execution_id, 1, "passed", actual="form shown")[0] == 303
    csrf = csrf_of(tester.get(f"/ui/manual/{execution_id}").text)
    released = tester.post(
        f"/ui/manual/{execution_id}/release", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert released.status_code == 303 and released.headers["location"] == "/ui/manual"
    assert state(execution_id)[:2] == ("PAUSED", None)
    queue = tester.get("/ui/manual").text
    assert str(execution_id) in section(queue, "Waiting for a tester")
    assert str(execution_id) not in section(queue, "Taken by me")
    page = tester.get(f"/ui/manual/{execution_id}").text
    assert "Nobody has taken this test yet" in page and "Take this test" in page


def test_a_second_tester_sees_the_test_taken_and_cannot_record_or_take_it(
    tester: TestClient, session: Session, user: Callable[[Role, str], str]
) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    from api.app import app

    with TestClient(app) as bob:
        sign_in(bob, user(Role.TESTER, "bob"))
        queue = bob.get("/ui/manual").text
        others = section(queue, "Taken by other testers")
        assert str(execution_id) in others and "tess" in others
        assert str(execution_id) not in section(queue, "Waiting for a tester")
        page = bob.get(f"/ui/manual/{execution_id}").text
        assert re.search(r"Taken by <b>tess</b> since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
        assert "Record step" not in page and "Take this test" not in page and "Release" not in page
        csrf = csrf_of(page)
        forged = bob.post(
            f"/ui/manual/{execution_id}/steps/1",
            data={"csrf_token": csrf, "status": "failed", "actual": "not mine"},
            follow_redirects=False,
        )
        assert forged.status_code == 403 and "only the tester this execution is assigned to" in forged.text
        taken = bob.post(f"/ui/manual/{execution_id}/take", data={"csrf_token": csrf}, follow_redirects=False)
        assert taken.status_code == 409 and "assigned to tess" in taken.text
        released = bob.post(
            f"/ui/manual/{execution_id}/release", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert released.status_code == 403
    status, assignee, steps, records = state(execution_id)
    assert (status, steps, records) == ("PAUSED", ["not_run"] * 3, 0)
    assert assignee == user_id("tess")


def test_a_viewer_sees_the_queue_without_buttons_and_a_forged_take_is_refused(
    client: TestClient, session: Session, user: Callable[[Role, str], str]
) -> None:
    execution_id = paused(session, "login by hand")
    sign_in(client, user(Role.VIEWER, "vera"))
    queue = client.get("/ui/manual")
    assert queue.status_code == 200 and str(execution_id) in section(queue.text, "Waiting for a tester")
    assert re.findall(r"<button[^>]*>([^<]*)</button>", queue.text) == ["Sign out"]
    page = client.get(f"/ui/manual/{execution_id}").text
    assert "Log in as alice" in page
    assert re.findall(r"<button[^>]*>([^<]*)</button>", page) == ["Sign out"]
    forged = client.post(
        f"/ui/manual/{execution_id}/take", data={"csrf_token": csrf_of(page)}, follow_redirects=False
    )
    assert forged.status_code == 403 and "tester role or higher" in forged.text
    assert state(execution_id)[:2] == ("PAUSED", None)


def test_forms_without_their_csrf_token_are_refused(tester: TestClient, session: Session) -> None:
    execution_id = paused(session, "login by hand")
    refused = tester.post(f"/ui/manual/{execution_id}/take", data={}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF token" in refused.text
    assert state(execution_id)[:2] == ("PAUSED", None)
    take(tester, execution_id)
    for path, data in (("steps/1", {"status": "passed"}), ("release", {})):
        refused = tester.post(
            f"/ui/manual/{execution_id}/{path}", data={**data, "csrf_token": "0" * 64}, follow_redirects=False
        )
        assert refused.status_code == 403
    status, assignee, steps, records = state(execution_id)
    assert (status, steps, records) == ("PAUSED", ["not_run"] * 3, 0) and assignee is not None


def test_bad_step_input_is_refused_with_its_reason_and_nothing_is_written(
    tester: TestClient, session: Session
) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    code, text = record(tester, execution_id, 1, "bogus", actual="kept as typed")
    assert code == 422 and "choose one of passed, failed, blocked, skipped" in text
    assert "kept as typed" in text  # the form again, with what was typed
    assert "Step 1 was not recorded: choose one of" in text
    code, text = record(tester, execution_id, 1, "not_run")
    assert code == 422 and "choose one of" in text
    code, text = record(tester, execution_id, 1, "passed", comment="x" * 20_001)
    assert code == 422 and "at most 20,000 characters" in text
    code, text = record(tester, execution_id, 1, "passed", actual="nul \x00 inside")
    assert code == 422  # PostgreSQL text cannot hold NUL: refused before any route
    code, text = record(tester, execution_id, 9, "passed")
    assert code == 422 and "step 9 does not exist; this test has steps 1..3" in text
    code, text = record(tester, execution_id, 0, "passed")
    assert code == 422
    assert state(execution_id)[2:] == (["not_run"] * 3, 0)
    missing = tester.get("/ui/manual/not-an-id")
    assert missing.status_code == 404 and "there is no execution" in missing.text
    assert tester.get(f"/ui/manual/{uuid.uuid4()}").status_code == 404


def test_an_automated_execution_has_no_manual_page(
    tester: TestClient, session: Session, queued: Callable[..., uuid.UUID]
) -> None:
    execution_id = queued()
    page = tester.get(f"/ui/manual/{execution_id}")
    assert page.status_code == 404 and "is not a manual test" in page.text


def test_a_recorded_step_can_be_changed_until_the_test_completes(
    tester: TestClient, session: Session
) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    assert record(tester, execution_id, 1, "failed", actual="blank page")[0] == 303
    page = tester.get(f"/ui/manual/{execution_id}").text
    assert "Change the result of step 1" in page and "Record step 1 again" in page and "Record step 2" in page
    assert "blank page</textarea>" in page  # the form starts from what was recorded
    assert record(tester, execution_id, 1, "passed", actual="form shown", comment="cache was stale")[0] == 303
    page = tester.get(f"/ui/manual/{execution_id}").text
    assert "cache was stale" in page and "blank page" not in page
    assert state(execution_id)[2:] == (["passed", "not_run", "not_run"], 2)  # every record is kept


def test_an_admin_may_give_anyones_test_back_to_the_queue(
    tester: TestClient, session: Session, user: Callable[[Role, str], str]
) -> None:
    execution_id = paused(session, "login by hand")
    take(tester, execution_id)
    from api.app import app

    with TestClient(app) as admin:
        sign_in(admin, user(Role.ADMIN, "ada"))
        page = admin.get(f"/ui/manual/{execution_id}").text
        assert "Taken by <b>tess</b>" in page and "Release to the queue" in page and "Record step" not in page
        released = admin.post(
            f"/ui/manual/{execution_id}/release", data={"csrf_token": csrf_of(page)}, follow_redirects=False
        )
        assert released.status_code == 303
    assert state(execution_id)[:2] == ("PAUSED", None)
