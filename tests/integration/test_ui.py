"""The web interface in-process: sign-in, the session cookie, CSRF, redirects, roles, and what the
runs and execution pages show (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from db.attempts import finish
from db.session import new_session
from tests.integration.scheduling import case_in_db, children_of, claim_one, row
from tests.integration.ui_support import csrf_of, sign_in

Headers = dict[str, str]


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID) -> uuid.UUID:
    response = client.post("/api/v1/executions/case", json={"test_case_id": str(case_id)}, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def fail_with_steps(execution_id: uuid.UUID) -> None:
    """End the execution FAILED with a passed and a failed step, as a worker would."""
    attempt = claim_one(execution_id)
    steps = [
        StepRecord(
            seq=1, name="test_ok", status="PASSED", duration_s=0.2, output="fine <script>alert(1)</script>\n"
        ),
        StepRecord(seq=2, name="test_bad", status="FAILED", duration_s=0.4, error="assert 1 == 2"),
    ]
    with new_session() as s, s.begin():
        assert finish(
            s, execution_id, attempt=attempt, status=Status.FAILED, actor="worker:w", summary={},
            error="1 of 2 tests failed", steps=steps,
        )  # fmt: skip


# ---- reaching the interface ------------------------------------------------------------------------


def test_the_root_leads_to_the_runs_and_an_anonymous_visitor_to_the_login(client: TestClient) -> None:
    for path in ("/", "/ui", "/ui/"):
        root = client.get(path, follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/ui/executions"
    runs = client.get("/ui/executions?status=FAILED", follow_redirects=False)
    assert runs.status_code == 303
    assert runs.headers["location"] == "/ui/login?next=%2Fui%2Fexecutions%3Fstatus%3DFAILED"
    login = client.get(runs.headers["location"])
    assert login.status_code == 200 and "Sign in to Anvil" in login.text
    assert 'value="/ui/executions?status=FAILED"' in login.text


def test_signing_in_sets_a_guarded_session_cookie_and_returns_to_the_page_asked_for(
    client: TestClient, user: Callable[[Role, str], str]
) -> None:
    name = user(Role.VIEWER, "vera")
    response = sign_in(client, name, next_="/ui/executions?status=PASSED")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/executions?status=PASSED"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("anvil_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here
    page = client.get("/ui/executions")
    assert page.status_code == 200 and "vera" in page.text and "Sign out" in page.text


def test_over_https_the_session_cookie_is_secure(clean_db: str, user: Callable[[Role, str], str]) -> None:
    from api.app import app

    name = user(Role.VIEWER, "hana")
    with TestClient(app, base_url="https://testserver") as client:
        response = sign_in(client, name)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("anvil_session="))
    assert "Secure" in cookie


def test_a_wrong_password_or_a_foreign_next_page_gets_no_further(
    client: TestClient, user: Callable[[Role, str], str]
) -> None:
    name = user(Role.VIEWER, "wes")
    wrong = sign_in(client, name, password="nope")
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    assert "anvil_session" not in client.cookies
    elsewhere = sign_in(client, name, next_="https://evil.example/ui/x")
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/ui/executions"


def test_a_sign_in_without_the_forms_csrf_token_is_refused(
    client: TestClient, user: Callable[[Role, str], str]
) -> None:
    name = user(Role.VIEWER, "cora")
    client.get("/ui/login")
    refused = client.post("/ui/login", data={"username": name, "password": "pw"}, follow_redirects=False)
    assert refused.status_code == 403 and "sign-in form" in refused.text
    forged = client.post(
        "/ui/login", data={"username": name, "password": "pw", "csrf_token": "0" * 64}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert "anvil_session" not in client.cookies


def test_signing_out_needs_the_csrf_token_and_ends_the_session(
    client: TestClient, user: Callable[[Role, str], str]
) -> None:
    sign_in(client, user(Role.VIEWER, "otto"))
    page = client.get("/ui/executions")
    assert client.post("/ui/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/executions", follow_redirects=False).status_code == 303
    # A live refresh after signing out sends the whole page to the sign-in page.
    refresh = client.get("/ui/executions/rows", headers={"HX-Request": "true"}, follow_redirects=False)
    assert refresh.status_code == 204 and refresh.headers["HX-Redirect"] == "/ui/login"


def test_a_revoked_session_is_sent_to_the_login(client: TestClient, user: Callable[[Role, str], str]) -> None:
    sign_in(client, user(Role.TESTER, "rita"))
    assert client.get("/ui/executions").status_code == 200
    with new_session() as s, s.begin():  # a password or role change revokes every token
        from sqlalchemy import text

        s.execute(text("UPDATE users SET token_generation = token_generation + 1 WHERE username = 'rita'"))
    assert client.get("/ui/executions", follow_redirects=False).status_code == 303


def test_the_api_does_not_take_the_session_cookie(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, auth(Role.ADMIN), case_in_db(session).id)
    sign_in(client, user(Role.ADMIN, "ada"))
    token = client.cookies["anvil_session"]
    # The cookie is limited to /ui; even sent by hand, the API wants a bearer token.
    api = client.get(f"/api/v1/executions/{execution_id}", headers={"Cookie": f"anvil_session={token}"})
    assert api.status_code == 401
    junit = client.get(f"/ui/executions/{execution_id}/junit.xml")
    assert junit.status_code == 200 and junit.headers["content-type"].startswith("application/xml")
    assert "<testsuite" in junit.text


# ---- the pages -----------------------------------------------------------------------------------


def test_the_runs_page_lists_newest_first_and_filters(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN, name="root")
    first = submit(client, admin, case_in_db(session, name="alpha").id)
    second = submit(client, admin, case_in_db(session, name="beta").id)
    fail_with_steps(first)
    sign_in(client, user(Role.VIEWER, "vic"))
    page = client.get("/ui/executions").text
    assert page.index(str(second)) < page.index(str(first))
    assert 'hx-trigger="every 2s"' in page  # beta is still QUEUED: the rows refresh themselves
    failed = client.get("/ui/executions", params={"status": "FAILED"}).text
    assert str(first) in failed and str(second) not in failed
    by_name = client.get("/ui/executions", params={"target": "beta"}).text
    assert str(second) in by_name and str(first) not in by_name
    by_who = client.get("/ui/executions", params={"who": "root"}).text
    assert str(first) in by_who and str(second) in by_who
    nobody = client.get("/ui/executions", params={"who": "nobody"})
    assert nobody.status_code == 200 and "no user named" in nobody.text and str(first) not in nobody.text
    later = client.get("/ui/executions", params={"since": "2999-01-01T00:00"}).text
    assert "No executions match." in later
    bad = client.get("/ui/executions", params={"status": "DONE", "since": "yesterday"})
    assert bad.status_code == 422 and "is not a status" in bad.text and "2026-12-01T08:00" in bad.text
    rows = client.get("/ui/executions/rows", params={"status": "FAILED"})
    assert rows.text.lstrip().startswith("<tbody") and str(first) in rows.text
    assert "hx-trigger" not in rows.text  # nothing shown is still active


def test_the_runs_page_pages_with_a_cursor(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    from api.ui import runs

    admin = auth(Role.ADMIN)
    case = case_in_db(session)
    made = [submit(client, admin, case.id) for _ in range(runs.PAGE_SIZE + 1)]
    sign_in(client, user(Role.VIEWER, "pia"))
    page = client.get("/ui/executions").text
    assert str(made[0]) not in page and str(made[-1]) in page
    older = re.search(r'href="(/ui/executions\?[^"]*cursor=[^"]+)" rel="next"', page)
    assert older, "no link to older executions"
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert str(made[0]) in second and str(made[-1]) not in second


def test_the_execution_page_shows_steps_failure_and_timeline(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, auth(Role.ADMIN), case_in_db(session).id)
    fail_with_steps(execution_id)
    sign_in(client, user(Role.VIEWER, "val"))
    page = client.get(f"/ui/executions/{execution_id}")
    assert page.status_code == 200
    for text in ("test_bad", "assert 1 == 2", "1 of 2 tests failed", "<details", "fine", "QUEUED"):
        assert text in page.text, text
    assert "&lt;script&gt;alert(1)" in page.text and "<script>alert" not in page.text  # escaped
    assert 'hx-trigger="every 2s"' not in page.text  # finished: no live refresh
    # A generic case is one test: each of its steps leads to that test's history.
    history = re.search(
        r'<a class="history" href="(/ui/tests/[0-9a-f-]{36})" aria-label="History of test_bad"', page.text
    )
    assert history, "no link from the step to its test's history"
    assert client.get(history.group(1)).status_code == 200
    assert client.get(f"/ui/executions/{uuid.uuid4()}").status_code == 404
    assert client.get("/ui/executions/not-an-id").status_code == 404


def test_a_long_run_shows_its_steps_a_page_at_a_time_with_the_failures_of_other_pages(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, auth(Role.ADMIN), case_in_db(session).id)
    attempt = claim_one(execution_id)
    steps = [
        StepRecord(
            seq=n, name=f"test_{n:03d}", status="failed" if n in (7, 333) else "passed", duration_s=0.01,
            output=f"output of {n:03d}\n", error=f"boom {n}" if n in (7, 333) else None,
        )
        for n in range(1, 451)
    ]  # fmt: skip
    with new_session() as s, s.begin():
        assert finish(
            s, execution_id, attempt=attempt, status=Status.FAILED, actor="worker:w", summary={},
            error="2 of 450 tests failed", steps=steps,
        )  # fmt: skip
    sign_in(client, user(Role.VIEWER, "paige"))
    first = client.get(f"/ui/executions/{execution_id}").text
    assert "450 steps: 2 failed, 448 passed" in first and "showing 1–200" in first
    assert "test_200" in first and "test_201" not in first
    assert "output of 200" in first and "output of 201" not in first  # only the shown steps' output
    # test_333 failed on the second page: listed, linking to that page and its step.
    failure = re.search(r'href="(/ui/executions/[^"]+\?steps=200#step-\d+)">test_333<', first)
    assert failure, "the failure on page 2 is not linked"
    second = client.get(failure.group(1).split("#")[0]).text
    assert "test_201" in second and "test_400" in second and "test_401" not in second
    assert "boom 333" in second and "Earlier steps" in second and "Later steps" in second
    last = client.get(f"/ui/executions/{execution_id}", params={"steps": 400}).text
    assert "test_450" in last and "Later steps" not in last and "showing 401–450" in last
    bad = client.get(f"/ui/executions/{execution_id}", params={"steps": "-1"})
    assert bad.status_code == 422 and "steps" in bad.text


def test_the_lineage_graph_links_a_suite_run_to_its_members(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN)
    cases = [case_in_db(session, name=f"member-{n}") for n in range(3)]
    suite = client.post("/api/v1/test-suites", json={"name": "graph", "case_ids": [str(c.id) for c in cases]},
                        headers=admin)  # fmt: skip
    assert suite.status_code == 201, suite.text
    run = client.post("/api/v1/executions/suite", json={"test_suite_id": suite.json()["id"]}, headers=admin)
    assert run.status_code == 201, run.text
    parent = uuid.UUID(run.json()["id"])
    members = children_of(parent)
    sign_in(client, user(Role.VIEWER, "gina"))
    page = client.get(f"/ui/executions/{parent}").text
    graph = page[page.index('<svg class="lineage-graph"') : page.index("</svg>")]
    for member in members:
        assert f'href="/ui/executions/{member.id}"' in graph
    assert graph.count('class="lg-edge"') == 3 and 'class="lg-here"' in graph
    member_page = client.get(f"/ui/executions/{members[0].id}").text
    assert f'href="/ui/executions/{parent}"' in member_page[member_page.index('<svg class="lineage-graph"') :]
    alone = submit(client, admin, cases[0].id)
    assert "lineage-graph" not in client.get(f"/ui/executions/{alone}").text


def test_a_viewer_sees_no_actions_and_a_forged_post_is_refused(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, auth(Role.ADMIN), case_in_db(session).id)
    sign_in(client, user(Role.VIEWER, "vlad"))
    page = client.get(f"/ui/executions/{execution_id}").text
    assert "/cancel" not in page and "/retry" not in page
    forged = client.post(f"/ui/executions/{execution_id}/cancel", data={"csrf_token": csrf_of(page)})
    assert forged.status_code == 403 and "tester role or higher" in forged.text
    assert row(execution_id).status == Status.QUEUED


def test_a_tester_acts_only_on_their_own_executions_and_only_with_the_csrf_token(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    case = case_in_db(session)
    theirs = submit(client, auth(Role.TESTER, name="tom"), case.id)
    mine = submit(client, auth(Role.TESTER, name="tess"), case.id)
    sign_in(client, "tess")
    other_page = client.get(f"/ui/executions/{theirs}").text
    assert "/cancel" not in other_page
    token = csrf_of(other_page)
    refused = client.post(f"/ui/executions/{theirs}/cancel", data={"csrf_token": token})
    assert refused.status_code == 403 and "requested by another user" in refused.text
    page = client.get(f"/ui/executions/{mine}").text
    assert f"/ui/executions/{mine}/cancel" in page
    assert client.post(f"/ui/executions/{mine}/cancel", data={}).status_code == 403
    assert client.post(f"/ui/executions/{mine}/cancel", data={"csrf_token": "x" * 64}).status_code == 403
    assert row(mine).status == Status.QUEUED
    done = client.post(f"/ui/executions/{mine}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/ui/executions/{mine}"
    assert row(mine).status == Status.CANCELLED
    again = client.post(f"/ui/executions/{mine}/cancel", data={"csrf_token": token})
    assert again.status_code == 409  # shown as a page, with the API's reason


def test_retry_and_retry_failed_only_from_the_page(
    client: TestClient, session: Session, user: Callable[[Role, str], str], auth: Callable[..., Headers]
) -> None:
    execution_id = submit(client, auth(Role.MAINTAINER, name="max"), case_in_db(session).id)
    fail_with_steps(execution_id)
    sign_in(client, "max")
    page = client.get(f"/ui/executions/{execution_id}").text
    assert 'name="failed_only" value="true"' in page and "Retry failed only" in page
    response = client.post(
        f"/ui/executions/{execution_id}/retry",
        data={"csrf_token": csrf_of(page), "failed_only": "true"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    (child,) = children_of(execution_id)
    assert response.headers["location"] == f"/ui/executions/{child.id}"
    assert child.trigger_kind == "retry" and row(execution_id).status == Status.RETRYING
    parent_page = client.get(f"/ui/executions/{execution_id}").text
    assert f"/ui/executions/{child.id}" in parent_page  # lineage: the retry is linked
    assert f"/ui/executions/{execution_id}" in client.get(f"/ui/executions/{child.id}").text


def test_static_files_are_served(client: TestClient) -> None:
    htmx = client.get("/ui/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:200]
    assert client.get("/ui/static/anvil.css").status_code == 200
