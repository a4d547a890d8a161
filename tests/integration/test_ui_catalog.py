"""The suites and cases pages in-process: the catalogue and its search, a case's definition (read
only, or an edit form for maintainers), submitting a case or a suite from its page, and what the
server refuses (roles, CSRF, bad values, unknown ids). The browser test drives the same pages."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from db.models import Execution, TestCase
from db.session import new_session
from tests.integration.scheduling import children_of, row
from tests.integration.ui_support import csrf_of, sign_in

Headers = dict[str, str]
SECRET = "s3cret-value"


def make_case(client: TestClient, admin: Headers, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "generic",
        "spec": {"workspace": "demo", "steps": [{"run": ["true"], "env": {"TOKEN": SECRET}}]},
        "timeout_s": 90,
        "tags": ["smoke"],
        **extra,
    }
    response = client.post("/api/v1/test-cases", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def make_suite(client: TestClient, admin: Headers, name: str, case_ids: list[str], **extra: Any) -> str:
    body = {"name": name, "case_ids": case_ids, **extra}
    response = client.post("/api/v1/test-suites", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored(case_id: str) -> TestCase:
    with new_session() as s:
        found = s.get(TestCase, uuid.UUID(case_id))
        assert found is not None
        s.expunge(found)
        return found


def executions() -> int:
    with new_session() as s:
        return s.scalar(select(func.count()).select_from(Execution)) or 0


def new_execution(response: Any) -> Execution:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/ui/executions/([0-9a-f-]{36})", response.headers["location"])
    assert found, response.headers["location"]
    return row(uuid.UUID(found.group(1)))


def alerts(html: str) -> list[str]:
    return re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)


@pytest.fixture
def admin(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.ADMIN, name="root")


# ---- the catalogue --------------------------------------------------------------------------------


def test_the_catalogue_lists_suites_and_cases_and_searches_them_by_name(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    checkout = make_case(client, admin, "checkout pays")
    login = make_case(
        client, admin, "login works", kind="manual", spec={"steps": [{"action": "a", "expected": "b"}]}
    )
    suite = make_suite(client, admin, "nightly checkout", [checkout["id"], login["id"]], fail_fast=True)
    sign_in(client, user(Role.VIEWER, "vera"))
    page = client.get("/ui/suites")
    assert page.status_code == 200
    links = [f'href="/ui/suites/{suite}"', *(f'href="/ui/cases/{c["id"]}"' for c in (checkout, login))]
    for text in (*links, "2 cases", "fail fast", "root", "manual"):
        assert text in page.text, text
    found = client.get("/ui/suites", params={"q": "CHECKOUT"}).text
    assert f"/ui/cases/{checkout['id']}" in found and f"/ui/suites/{suite}" in found
    assert f"/ui/cases/{login['id']}" not in found
    manual = client.get("/ui/suites", params={"kind": "manual"}).text
    assert f"/ui/cases/{login['id']}" in manual and f"/ui/cases/{checkout['id']}" not in manual
    nothing = client.get("/ui/suites", params={"q": "100%_"}).text  # LIKE's wildcards taken literally
    assert "No case matches." in nothing and "No suite" in nothing


def test_the_catalogue_shows_a_bounded_page_with_a_link_to_more(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.ui import catalog

    monkeypatch.setattr(catalog, "LIST_SIZE", 2)
    made = [make_case(client, admin, f"case-{n}") for n in "abc"]
    sign_in(client, user(Role.VIEWER, "pia"))
    first = client.get("/ui/suites").text
    assert made[0]["id"] in first and made[1]["id"] in first and made[2]["id"] not in first
    more = re.search(r'href="([^"]+)" rel="next">More cases', first)
    assert more, "no link to more cases"
    second = client.get(more.group(1).replace("&amp;", "&")).text
    assert made[2]["id"] in second and made[0]["id"] not in second
    assert "More cases" not in second


# ---- a case's definition ----------------------------------------------------------------------------


def test_a_case_is_read_only_below_maintainer_with_its_env_values_masked(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "pays", description="pays with a card", retry_policy={"max_retries": 2})
    sign_in(client, user(Role.VIEWER, "vic"))
    page = client.get(f"/ui/cases/{case['id']}")
    assert page.status_code == 200
    for text in (
        "pays with a card",
        "generic",
        "90 s",
        "2 retries",
        "max_retries",
        '"workspace": "demo"',
        "***",
    ):
        assert text in html.unescape(page.text), text
    assert SECRET not in page.text
    assert "/edit" not in page.text and "<textarea" not in page.text and "/submit" not in page.text
    sign_in(client, user(Role.TESTER, "tess"))
    tester = client.get(f"/ui/cases/{case['id']}").text
    assert (
        f'action="/ui/cases/{case["id"]}/submit"' in tester and "/edit" not in tester and SECRET not in tester
    )
    sign_in(client, user(Role.MAINTAINER, "max"))
    maintainer = client.get(f"/ui/cases/{case['id']}").text
    assert f'action="/ui/cases/{case["id"]}/edit"' in maintainer and SECRET in maintainer


def test_a_maintainer_edits_a_case_through_the_apis_validation(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "edit me")
    sign_in(client, user(Role.MAINTAINER, "max"))
    page = client.get(f"/ui/cases/{case['id']}").text
    form = {
        "csrf_token": csrf_of(page), "version": "1", "name": "edit me", "description": "",
        "tags": "smoke, fast", "timeout_s": "120", "retry_policy": "",
        "spec": '{"workspace": "demo", "steps": [{"run": ["echo", "hi"]}]}',
    }  # fmt: skip
    url = f"/ui/cases/{case['id']}/edit"

    bad_json = client.post(url, data={**form, "spec": '{"workspace": "demo",'})
    assert bad_json.status_code == 422 and "spec: not valid JSON" in bad_json.text
    assert '>{"workspace": "demo",</textarea>' in html.unescape(
        bad_json.text
    )  # the form keeps what was typed
    bad_spec = client.post(url, data={**form, "spec": '{"workspace": "demo", "steps": [{"command": "x"}]}'})
    assert bad_spec.status_code == 422
    assert any(a.startswith("spec.steps.0") for a in alerts(bad_spec.text)), alerts(bad_spec.text)
    bad_retry = client.post(url, data={**form, "retry_policy": '{"max_retries": 99}'})
    assert bad_retry.status_code == 422 and "retry_policy.max_retries" in bad_retry.text
    too_deep = client.post(url, data={**form, "spec": "[" * 100_000})
    assert too_deep.status_code == 422 and "spec: nested too deeply" in too_deep.text
    bad_timeout = client.post(url, data={**form, "timeout_s": "soon"})
    assert bad_timeout.status_code == 422 and "whole number of seconds" in bad_timeout.text
    unchanged = stored(case["id"])
    assert (
        unchanged.version == 1 and unchanged.spec["steps"][0]["run"] == ["true"] and unchanged.timeout_s == 90
    )

    saved = client.post(url, data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"/ui/cases/{case['id']}?saved=2"
    changed = stored(case["id"])
    assert changed.version == 2 and changed.spec["steps"][0]["run"] == ["echo", "hi"]
    assert changed.tags == ["smoke", "fast"] and changed.timeout_s == 120
    assert "Saved: this is version 2." in client.get(saved.headers["location"]).text

    stale = client.post(url, data={**form, "name": "renamed"})  # the form still says version 1
    assert stale.status_code == 409 and "now version 2" in stale.text
    assert stored(case["id"]).name == "edit me"


def test_editing_needs_the_maintainer_role_and_the_csrf_token(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "guarded")
    form = {
        "version": "1",
        "name": "taken over",
        "spec": '{"workspace": "demo", "steps": [{"run": ["true"]}]}',
    }
    sign_in(client, user(Role.TESTER, "tess"))
    token = csrf_of(client.get(f"/ui/cases/{case['id']}").text)
    forged = client.post(f"/ui/cases/{case['id']}/edit", data={**form, "csrf_token": token})
    assert forged.status_code == 403 and "maintainer role or higher" in forged.text
    sign_in(client, user(Role.MAINTAINER, "max"))
    tokenless = client.post(f"/ui/cases/{case['id']}/edit", data=form)
    assert tokenless.status_code == 403 and "CSRF token" in tokenless.text
    assert stored(case["id"]).name == "guarded" and stored(case["id"]).version == 1


# ---- submitting ------------------------------------------------------------------------------------


def test_a_tester_submits_a_case_with_priority_and_options(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "run me")
    sign_in(client, user(Role.TESTER, "tess"))
    page = client.get(f"/ui/cases/{case['id']}").text
    assert 'name="shards"' not in page  # a generic case cannot be split
    form = {"csrf_token": csrf_of(page), "priority": "HIGH", "revision": "abc123", "branch": "feature/pay",
            "environment": "staging"}  # fmt: skip
    before = executions()
    bad = client.post(f"/ui/cases/{case['id']}/submit", data={**form, "branch": "has space"})
    assert bad.status_code == 422 and "branch: a git branch name" in bad.text
    assert 'value="has space"' in bad.text
    forged_shards = client.post(f"/ui/cases/{case['id']}/submit", data={**form, "shards": "2"})
    assert forged_shards.status_code == 422 and "shards split pytest and bdd cases" in forged_shards.text
    bad_priority = client.post(f"/ui/cases/{case['id']}/submit", data={**form, "priority": "URGENT"})
    assert bad_priority.status_code == 422 and "priority" in alerts(bad_priority.text)[0]
    assert executions() == before

    execution = new_execution(
        client.post(f"/ui/cases/{case['id']}/submit", data=form, follow_redirects=False)
    )
    assert str(execution.test_case_id) == case["id"]
    assert (execution.priority, execution.trigger_kind) == ("HIGH", "manual")
    assert (execution.revision, execution.branch, execution.environment) == (
        "abc123",
        "feature/pay",
        "staging",
    )
    assert executions() == before + 1
    again = client.get(f"/ui/cases/{case['id']}").text
    assert (
        f'href="/ui/executions/{execution.id}"' in again and 'hx-get="/ui/cases/' in again
    )  # live: it is queued
    rows = client.get(f"/ui/cases/{case['id']}/runs").text
    assert rows.lstrip().startswith("<tbody") and str(execution.id) in rows


def test_a_pytest_case_is_submitted_with_shards(
    client: TestClient, session: Session, user: Callable[[Role, str], str]
) -> None:
    with session.begin():
        case = TestCase(id=uuid.uuid4(), name="py", kind="pytest", spec={"workspace": "demo", "args": []},
                        tags=[], timeout_s=60)  # fmt: skip
        session.add(case)
    sign_in(client, user(Role.TESTER, "tess"))
    page = client.get(f"/ui/cases/{case.id}").text
    assert 'name="shards"' in page
    url, token = f"/ui/cases/{case.id}/submit", csrf_of(page)
    bad = client.post(url, data={"csrf_token": token, "priority": "LOW", "shards": "99"})
    assert bad.status_code == 422 and "shards must be a whole number from 1 to 64" in bad.text
    execution = new_execution(
        client.post(url, data={"csrf_token": token, "priority": "LOW", "shards": "3"}, follow_redirects=False)
    )
    assert execution.priority == "LOW" and execution.case_snapshot["spec"]["shards"] == 3


def test_a_tester_submits_a_suite_and_its_page_shows_the_run_with_progress(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    cases = [make_case(client, admin, f"member {n}") for n in (1, 2)]
    suite = make_suite(client, admin, "the suite", [c["id"] for c in cases], default_priority="LOW")
    sign_in(client, user(Role.TESTER, "tess"))
    page = client.get(f"/ui/suites/{suite}")
    assert page.status_code == 200
    for case in cases:
        assert f'href="/ui/cases/{case["id"]}"' in page.text
    assert "Members (2)" in page.text and "suite default (LOW)" in page.text and "Not run yet." in page.text
    url, token = f"/ui/suites/{suite}/submit", csrf_of(page.text)
    bad = client.post(url, data={"csrf_token": token, "revision": "no spaces please"})
    assert bad.status_code == 422 and "revision: a commit SHA" in bad.text and executions() == 0

    execution = new_execution(
        client.post(
            url, data={"csrf_token": token, "priority": "", "environment": "py3.12"}, follow_redirects=False
        )
    )
    assert execution.test_case_id is None and str(execution.test_suite_id) == suite
    assert (execution.priority, execution.trigger_kind, execution.environment) == ("LOW", "manual", "py3.12")
    assert len(children_of(execution.id)) == 2
    shown = client.get(f"/ui/suites/{suite}").text
    assert f'href="/ui/executions/{execution.id}"' in shown and '<span class="count">0/2</span>' in shown
    urgent = new_execution(
        client.post(url, data={"csrf_token": token, "priority": "CRITICAL"}, follow_redirects=False)
    )
    assert urgent.priority == "CRITICAL"
    progress = client.get(f"/ui/executions/{execution.id}").text
    assert '<progress value="0" max="2"' in progress  # the execution page shows the suite's progress


def test_a_viewer_sees_no_submit_form_and_a_forged_or_tokenless_submit_is_refused(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "not for viewers")
    suite = make_suite(client, admin, "not for viewers either", [case["id"]])
    sign_in(client, user(Role.VIEWER, "vlad"))
    case_page = client.get(f"/ui/cases/{case['id']}").text
    suite_page = client.get(f"/ui/suites/{suite}").text
    for page in (case_page, suite_page):
        assert "/submit" not in page and "Submit run" not in page
    token = csrf_of(case_page)  # the sign-out form's: a forged form has the right token
    for url in (f"/ui/cases/{case['id']}/submit", f"/ui/suites/{suite}/submit"):
        forged = client.post(url, data={"csrf_token": token, "priority": "HIGH"})
        assert forged.status_code == 403 and "tester role or higher" in forged.text
    sign_in(client, user(Role.TESTER, "tess"))
    for url in (f"/ui/cases/{case['id']}/submit", f"/ui/suites/{suite}/submit"):
        tokenless = client.post(url, data={"priority": "HIGH"})
        assert tokenless.status_code == 403 and "Form refused" in tokenless.text
    assert executions() == 0


def test_unknown_cases_and_suites_are_a_404_page(
    client: TestClient, admin: Headers, user: Callable[[Role, str], str]
) -> None:
    case = make_case(client, admin, "soon gone")
    assert client.delete(f"/api/v1/test-cases/{case['id']}", headers=admin).status_code == 204
    sign_in(client, user(Role.TESTER, "tess"))
    token = csrf_of(client.get("/ui/suites").text)
    for path in (f"/ui/cases/{uuid.uuid4()}", "/ui/cases/not-an-id", f"/ui/suites/{uuid.uuid4()}",
                 "/ui/suites/not-an-id", f"/ui/cases/{case['id']}"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 404 and ("does not exist" in page.text or "there is no" in page.text), path
        assert "<h1>Not found</h1>" in page.text
    missing = client.post(f"/ui/suites/{uuid.uuid4()}/submit", data={"csrf_token": token})
    assert missing.status_code == 404 and executions() == 0
