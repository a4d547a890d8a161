"""The tests pages in-process: the tests listing and its filters, the flaky board with its evidence,
quarantine and release by role (and refused without CSRF or the role), one test's history strip and
duration sparkline, and statistics for a scope and window. Results are written by the real path
(executions claimed and finished with their steps: tests/integration/test_history.py's ``run``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from db.models import Test, TestQuarantineEvent
from db.session import new_session
from tests.integration.test_history import pytest_case, run
from tests.integration.ui_support import csrf_of, sign_in

A, B, C = "tests/test_x.py::test_alpha", "tests/test_x.py::test_beta", "tests/test_y.py::test_gamma"
LISTED = re.compile(r'<tr data-test="([^"]+)">')
BOARD = re.compile(r'<li class="flaky" data-test="([^"]+)">')
MakeUser = Callable[[Role, str], str]


@pytest.fixture
def shop(session: Session) -> dict[str, Any]:
    """A pytest case run three times: alpha always passes, beta fails on the second run only (on
    the first run's revision: flaky), gamma is skipped."""
    case = pytest_case(session)
    runs = [
        run(case, {A: "passed", B: "passed", C: "skipped"}, revision="rev1"),
        run(case, {A: "passed", B: "failed", C: "skipped"}, revision="rev1"),
        run(case, {A: "passed", B: "passed", C: "skipped"}, revision="rev2"),
    ]
    with new_session() as s:
        ids = dict(s.execute(select(Test.key, Test.id).where(Test.test_case_id == case.id)).tuples().all())
    return {"case": case, "runs": runs, "ids": {key: str(i) for key, i in ids.items()}}


def listed(client: TestClient, **params: str) -> tuple[int, list[str], str]:
    page = client.get("/ui/tests", params=params)
    table = page.text.split('id="flaky-board"')[0]
    return page.status_code, LISTED.findall(table), page.text


def board_of(html: str) -> str:
    return html.split('id="flaky-board"')[1].split('id="slowest"')[0]


def is_quarantined(test_id: str) -> bool:
    with new_session() as s:
        test = s.get(Test, uuid.UUID(test_id))
        assert test is not None
        return test.quarantined_at is not None


# ---- the listing -----------------------------------------------------------------------------------


def test_the_listing_finds_tests_by_name_case_kind_last_status_and_flakiness(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    ids, case = shop["ids"], shop["case"]
    sign_in(client, user(Role.VIEWER, "vic"))
    status, rows, html = listed(client)
    assert status == 200 and rows == [ids[A], ids[B], ids[C]]  # by name
    # The last status links to an execution where the test ended so: beta's, the last run.
    beta_row = html.split(f'<tr data-test="{ids[B]}">')[1].split("</tr>")[0]
    assert f'href="/ui/executions/{shop["runs"][2]}"' in beta_row and "s-passed" in beta_row
    assert listed(client, search="BETA")[1] == [ids[B]]
    assert listed(client, case=case.name, status="skipped")[1] == [ids[C]]
    assert listed(client, kind="pytest", flaky="yes")[1] == [ids[B]]
    assert listed(client, flaky="no")[1] == [ids[A], ids[C]]
    assert listed(client, kind="bdd")[1] == []
    assert listed(client, quarantined="yes")[1] == []

    status, rows, html = listed(client, kind="cucumber")
    assert status == 422 and rows == [] and "kind: &#39;cucumber&#39; is not a kind of test" in html
    status, rows, html = listed(client, flaky="maybe")
    assert status == 422 and "flaky: choose yes, no" in html
    status, rows, html = listed(client, case="no-such-case")
    assert status == 200 and rows == [] and "there is no test case named &#39;no-such-case&#39;" in html
    status, rows, html = listed(client, cursor="not-a-cursor")
    assert status == 422 and "cursor is not one this API returned" in html


def test_the_listing_pages_by_name(client: TestClient, user: MakeUser, shop: dict[str, Any]) -> None:
    from api.ui import tests_page

    sign_in(client, user(Role.VIEWER, "pia"))
    original = tests_page.PAGE_SIZE
    tests_page.PAGE_SIZE = 2
    try:
        first = client.get("/ui/tests")
        following = re.search(r'href="(/ui/tests\?cursor=[^"]+)" rel="next"', first.text)
        assert following, "a first page of two out of three has a next link"
        second = client.get(following.group(1).replace("&amp;", "&"))
    finally:
        tests_page.PAGE_SIZE = original
    assert LISTED.findall(first.text) == [shop["ids"][A], shop["ids"][B]]
    assert LISTED.findall(second.text.split('id="flaky-board"')[0]) == [shop["ids"][C]]


# ---- the flaky board -------------------------------------------------------------------------------


def test_the_board_shows_a_flaky_tests_evidence_and_links_to_the_executions_that_show_it(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    sign_in(client, user(Role.VIEWER, "val"))
    page = client.get("/ui/tests")
    assert page.status_code == 200
    board = board_of(page.text)
    assert BOARD.findall(board) == [shop["ids"][B]]  # alpha never failed, gamma never ran
    assert "passed and failed on revision rev1: 1 of 2 runs failed" in board
    first, second, third = shop["runs"]
    assert f'href="/ui/executions/{first}"' in board and f'href="/ui/executions/{second}"' in board
    assert f'href="/ui/executions/{third}"' not in board  # another revision: not evidence
    assert "1 of 3 runs failed" in board
    # The slowest tests: beta (0.2 s each) before alpha (0.1 s); gamma was never timed as it ran.
    slowest = page.text.split('id="slowest"')[1]
    assert slowest.index(shop["ids"][B]) < slowest.index(shop["ids"][A])
    # A viewer reads the board but has no quarantine button.
    assert "Quarantine</button>" not in page.text and "/quarantine" not in page.text


def test_the_board_takes_in_a_new_runs_results_without_judging_everything_again(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    from api.ui import tests_page

    sign_in(client, user(Role.VIEWER, "noa"))
    assert BOARD.findall(board_of(client.get("/ui/tests").text)) == [shop["ids"][B]]
    judged_at = tests_page._boards[None].judged_at
    # alpha fails on rev2, where it passed: flaky now; beta's verdict stands (not judged again).
    run(shop["case"], {A: "failed", B: "passed", C: "skipped"}, revision="rev2")
    board = board_of(client.get("/ui/tests").text)
    assert BOARD.findall(board) == [shop["ids"][A], shop["ids"][B]]  # the same evidence: by name
    assert "passed and failed on revision rev2" in board
    assert tests_page._boards[None].judged_at == judged_at  # brought up to date, not judged in full


# ---- quarantine and release --------------------------------------------------------------------------


def test_a_maintainer_quarantines_from_the_board_and_releases_from_the_tests_page(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    beta = shop["ids"][B]
    sign_in(client, user(Role.MAINTAINER, "mia"))
    page = client.get("/ui/tests")
    assert f'action="/ui/tests/{beta}/quarantine"' in board_of(page.text)
    done = client.post(
        f"/ui/tests/{beta}/quarantine",
        data={"csrf_token": csrf_of(page.text), "reason": "the sandbox is down", "back": "/ui/tests"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/tests"
    assert is_quarantined(beta)
    board = board_of(client.get("/ui/tests").text)
    assert "quarantined" in board and f'action="/ui/tests/{beta}/release"' in board
    assert listed(client, quarantined="yes")[1] == [beta]

    history = client.get(f"/ui/tests/{beta}")
    assert "the sandbox is down" in history.text and "by mia" in history.text
    released = client.post(
        f"/ui/tests/{beta}/release",
        data={"csrf_token": csrf_of(history.text), "reason": "it is back"},
        follow_redirects=False,
    )
    assert released.status_code == 303 and released.headers["location"] == f"/ui/tests/{beta}"
    assert not is_quarantined(beta)
    with new_session() as s:
        audit = s.execute(
            select(TestQuarantineEvent.action, TestQuarantineEvent.actor, TestQuarantineEvent.reason)
            .where(TestQuarantineEvent.test_id == uuid.UUID(beta))
            .order_by(TestQuarantineEvent.id)
        ).all()
    assert [tuple(a) for a in audit] == [
        ("quarantined", "mia", "the sandbox is down"),
        ("released", "mia", "it is back"),
    ]
    again = client.post(
        f"/ui/tests/{beta}/release", data={"csrf_token": csrf_of(history.text)}, follow_redirects=False
    )
    assert again.status_code == 409 and "is not quarantined" in again.text


def test_quarantine_forms_are_refused_without_the_role_the_csrf_token_or_a_reason(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    beta = shop["ids"][B]
    sign_in(client, user(Role.TESTER, "tess"))
    page = client.get(f"/ui/tests/{beta}")
    assert page.status_code == 200 and "Quarantine</button>" not in page.text
    csrf = csrf_of(page.text)  # the sign-out form's: a valid token for this session
    forged = client.post(f"/ui/tests/{beta}/quarantine", data={"csrf_token": csrf, "reason": "mine"})
    assert forged.status_code == 403 and "maintainer role or higher" in forged.text
    assert not is_quarantined(beta)

    client.cookies.clear()
    sign_in(client, user(Role.MAINTAINER, "max"))
    tokenless = client.post(f"/ui/tests/{beta}/quarantine", data={"reason": "no token"})
    assert tokenless.status_code == 403 and "Form refused" in tokenless.text
    wrong = client.post(f"/ui/tests/{beta}/quarantine", data={"reason": "bad token", "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert not is_quarantined(beta)

    csrf = csrf_of(client.get(f"/ui/tests/{beta}").text)
    blank = client.post(f"/ui/tests/{beta}/quarantine", data={"csrf_token": csrf, "reason": "  "})
    assert blank.status_code == 422 and "give the reason for the quarantine" in blank.text
    days = client.post(
        f"/ui/tests/{beta}/quarantine", data={"csrf_token": csrf, "reason": "x", "expires_in_days": "soon"}
    )
    assert days.status_code == 422 and "a number of days" in days.text
    unknown = client.post(f"/ui/tests/{uuid.uuid4()}/quarantine", data={"csrf_token": csrf, "reason": "x"})
    assert unknown.status_code == 404
    assert not is_quarantined(beta)
    # With an expiry, and a foreign "back" address is not followed.
    done = client.post(
        f"/ui/tests/{beta}/quarantine",
        data={"csrf_token": csrf, "reason": "x", "expires_in_days": "7", "back": "https://evil.example/"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/ui/tests/{beta}"
    assert "until" in client.get(f"/ui/tests/{beta}").text


# ---- one test's history -------------------------------------------------------------------------------

CELL = re.compile(
    r'<a class="cell r-(\w+)( quarantined)?" href="/ui/executions/([^"]+)" '
    r'title="([^"]+)" aria-label="([^"]+)">'
)


def test_the_history_strip_shows_the_runs_oldest_first_with_links_and_labels_and_a_sparkline(
    client: TestClient, user: MakeUser, shop: dict[str, Any], auth: Callable[..., dict[str, str]]
) -> None:
    beta = shop["ids"][B]
    headers = auth(Role.MAINTAINER, name="mona")
    assert client.post(
        f"/api/v1/tests/{beta}/quarantine", json={"reason": "known"}, headers=headers
    ).status_code == 201  # fmt: skip
    fourth = run(shop["case"], {A: "passed", B: "failed", C: "skipped"}, revision="rev3")
    sign_in(client, user(Role.VIEWER, "hugo"))
    page = client.get(f"/ui/tests/{beta}")
    assert page.status_code == 200
    cells = CELL.findall(page.text)
    assert [(c[0], bool(c[1]), c[2]) for c in cells] == [
        ("passed", False, shop["runs"][0]),
        ("failed", False, shop["runs"][1]),
        ("passed", False, shop["runs"][2]),
        ("failed", True, fourth),
    ]
    for status, _, _, title, label in cells:
        assert (
            title == label
            and label.startswith(status)
            and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", label)
        )
    assert cells[-1][4].startswith("failed under quarantine")
    # The results table says the same, newest first.
    table = page.text.split('id="results"')[1]
    assert [table.index(r) for r in (fourth, shop["runs"][2])] == sorted(
        table.index(r) for r in (fourth, shop["runs"][2])
    )
    svg = re.search(r'<svg class="chart sparkline" role="img" aria-label="([^"]+)".*?</svg>', page.text, re.S)
    assert svg and "Duration of the last 4 timed runs" in svg.group(1)
    points = re.search(r'<polyline points="([^"]+)"', svg.group(0))
    assert points and len(points.group(1).split()) == 4
    assert "passed and failed on revision rev1" in page.text  # the verdict, with its evidence


def test_an_unknown_or_malformed_test_is_a_404_page_and_a_bad_cursor_a_422(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    sign_in(client, user(Role.VIEWER, "nina"))
    for path in (f"/ui/tests/{uuid.uuid4()}", "/ui/tests/not-a-test"):
        page = client.get(path)
        assert page.status_code == 404 and ("does not exist" in page.text or "there is no test" in page.text)
    bad_cursor = client.get(f"/ui/tests/{shop['ids'][A]}", params={"cursor": "zzz"})
    assert bad_cursor.status_code == 422 and "cursor is not one this API returned" in bad_cursor.text


# ---- statistics -----------------------------------------------------------------------------------------


def test_stats_for_a_scope_and_window_as_numbers_and_charts(
    client: TestClient, user: MakeUser, shop: dict[str, Any]
) -> None:
    sign_in(client, user(Role.VIEWER, "stan"))
    page = client.get("/ui/stats", params={"case": shop["case"].name, "window": "7d"})
    assert page.status_code == 200
    figures = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)", page.text))
    assert figures["Runs"] == "3" and figures["Results"] == "9" and figures["Flaky tests"].strip() == "1"
    assert figures["Pass rate"] == "83.3 %"  # 5 of the 6 that ran (skipped left out)
    days = re.search(r'<svg class="chart columns".*?</svg>', page.text, re.S)
    assert days and days.group(0).count('<rect class="bar"') == 1  # every run today
    assert "pass rate 83%" in days.group(0)
    assert (
        '<svg class="chart bars" role="img" aria-label="5 passed, 1 failed, 0 error, 3 skipped"' in page.text
    )
    runs = client.get("/ui/stats", params={"window": "runs=2"})
    assert runs.status_code == 200 and "last 2 runs" in runs.text


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"window": "30x"}, 422, "is not a span like 30d, 12h or 2w"),
        ({"window": "0d"}, 422, "must be longer than 0"),
        ({"window": "runs=lots"}, 422, "is not a number of runs"),
        ({"window": "runs=0"}, 422, "runs must be between 1 and"),
        ({"window": "7d", "runs": "3"}, 422, "not both"),
        ({"case": "no-such-case"}, 404, "no test case with id or name"),
        ({"suite": "no-such-suite"}, 404, "no test suite with id or name"),
    ],
)
def test_a_bad_window_or_scope_is_the_form_again_with_a_clear_message(
    client: TestClient, user: MakeUser, params: dict[str, str], status: int, message: str
) -> None:
    sign_in(client, user(Role.VIEWER, "bea"))
    page = client.get("/ui/stats", params=params)
    assert page.status_code == status and message in page.text
    assert 'role="alert"' in page.text and 'name="window"' in page.text
