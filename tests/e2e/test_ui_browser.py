"""The web interface in a real headless Chromium (Playwright), against real `anvil api`, `worker`
and `beat` processes (tests/e2e/conftest.py's stack).
The browser, its flags and signing in: tests/e2e/browser.py. Screenshots go to docs/ (for the
README).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.e2e.browser import expect, make_user, shot, sign_in
from tests.e2e.conftest import Stack, StackFactory
from tests.e2e.test_pytest_runner import add_workspace, submit

FAILING = {
    "tests/test_math.py": """
        def test_adds():
            assert 1 + 1 == 2


        def test_divides():
            assert 7 // 2 == 4, "integer division rounds down"
    """
}


def test_a_failing_pytest_execution_shows_its_failure_text(stack: Stack, page: Any) -> None:
    add_workspace(stack, "failing", FAILING)
    execution_id = submit(stack, "failing", ["tests"])
    assert stack.wait_final(execution_id)["status"] == "FAILED"
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    shot(page, "ui-runs.png")
    page.get_by_role("link", name=re.compile(r"^pytest-")).first.click()
    expect(page.get_by_role("heading", name="Steps")).to_be_visible()
    expect(page.locator(".step", has_text="test_divides").locator(".failure")).to_contain_text(
        "integer division rounds down"
    )
    expect(page.get_by_role("button", name="Retry failed only")).to_be_visible()
    shot(page, "ui-execution.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JUnit XML").click()
    assert "test_divides" in Path(download.value.path()).read_text()


def test_the_runs_page_follows_a_running_execution_without_reloading(stack: Stack, page: Any) -> None:
    case = stack.create_case([{"name": "wait", "run": ["sleep", "60"]}])
    execution_id = stack.submit(case["id"])["id"]
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.evaluate("window.stillTheSamePage = true")
    row = page.locator(f'tr[data-id="{execution_id}"] .status')
    expect(row).to_have_text("RUNNING")
    response = stack.client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 200, response.text
    expect(row).to_have_text("CANCELLED")
    assert page.evaluate("window.stillTheSamePage") is True


def test_a_viewer_sees_no_actions_and_forged_or_tokenless_posts_are_refused(stack: Stack, page: Any) -> None:
    case = stack.create_case([{"name": "wait", "run": ["sleep", "60"]}])
    execution_id = stack.submit(case["id"])["id"]
    stack.wait_status(execution_id, {"RUNNING"})
    name, password = make_user(stack, "viewer")
    sign_in(page, stack, name, password)
    page.goto(f"{stack.api_url}/ui/executions/{execution_id}")
    expect(page.get_by_role("heading", name="Steps")).to_be_visible()
    for label in ("Cancel", "Retry", "Retry failed only"):
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    # A forged form, posted from the signed-in page with the right token: the role still refuses.
    forged = page.request.post(
        f"{stack.api_url}/ui/executions/{execution_id}/cancel", form={"csrf_token": csrf}
    )
    assert forged.status == 403 and "tester role or higher" in forged.text()
    assert stack.get(execution_id)["status"] == "RUNNING"
    stack.client.post(f"/api/v1/executions/{execution_id}/cancel")


def test_a_form_without_its_csrf_token_is_refused(stack: Stack, page: Any) -> None:
    case = stack.create_case([{"name": "wait", "run": ["sleep", "60"]}])
    execution_id = stack.submit(case["id"])["id"]
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.goto(f"{stack.api_url}/ui/executions/{execution_id}")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
    # What a cross-site form would send: the same POST, without the token.
    action = f"/ui/executions/{execution_id}/cancel"
    form = f'<form method="post" action="{action}"><button>Tokenless</button></form>'
    page.evaluate("form => document.querySelector('main').insertAdjacentHTML('beforeend', form)", form)
    with page.expect_response(re.compile(r"/cancel$")) as answer:
        page.get_by_role("button", name="Tokenless").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    assert stack.get(execution_id)["status"] != "CANCELLED"
    # With its token, the same button cancels.
    page.goto(f"{stack.api_url}/ui/executions/{execution_id}")
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#live .facts .status").first).to_have_text(re.compile("CANCELLED|RUNNING"))
    stack.wait_status(execution_id, {"CANCELLED"})


def test_a_suites_progress_bar_fills_and_its_status_turns_passed_without_reloading(
    make_stack: StackFactory, page: Any
) -> None:
    stack = make_stack(workers=0)  # nothing runs until the page is open
    cases = [stack.create_case([{"name": "ok", "run": ["true"]}]) for _ in range(2)]
    body = {"name": "ui-suite", "case_ids": [c["id"] for c in cases]}
    suite = stack.client.post("/api/v1/test-suites", json=body)
    assert suite.status_code == 201, suite.text
    submitted = stack.client.post("/api/v1/executions/suite", json={"test_suite_id": suite.json()["id"]})
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["id"]
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.evaluate("window.stillTheSamePage = true")
    row = page.locator(f'tr[data-id="{execution_id}"]')
    expect(row.locator(".count")).to_have_text("0/2")
    stack.start_worker()
    expect(row.locator(".count")).to_have_text("2/2")
    expect(row.locator("progress")).to_have_attribute("value", "2")
    expect(row.locator(".status")).to_have_text("PASSED")
    assert page.evaluate("window.stillTheSamePage") is True
