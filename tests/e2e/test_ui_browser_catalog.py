"""The suites and cases pages in a real headless Chromium against real `anvil api`, `worker` and
`beat` processes: submit a suite from its form and watch it finish without reloading; edit and
submit a case; what a viewer is refused. Screenshots: docs/ui-suite.png, docs/ui-case.png."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.browser import expect, make_user, shot, sign_in
from tests.e2e.conftest import Stack, StackFactory

EXECUTION_URL = re.compile(r"/ui/executions/([0-9a-f-]{36})$")


def test_a_suite_submitted_from_its_form_fills_its_progress_bar_and_passes_without_reloading(
    make_stack: StackFactory, page: Any
) -> None:
    stack = make_stack(workers=0)  # nothing runs until the execution page is open
    cases = [stack.create_case([{"name": "ok", "run": ["true"]}], name=f"checkout step {n}") for n in (1, 2)]
    body = {"name": "checkout nightly", "case_ids": [c["id"] for c in cases], "description": "every night"}
    suite = stack.client.post("/api/v1/test-suites", json=body)
    assert suite.status_code == 201, suite.text
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.get_by_role("link", name="Suites & cases").click()
    page.get_by_role("searchbox", name="Name contains").fill("nightly")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="checkout nightly").click()
    expect(page.get_by_role("heading", name="Members (2)")).to_be_visible()

    page.get_by_label("Priority").select_option("HIGH")
    page.get_by_label("Branch").fill("main")
    page.get_by_label("Environment").fill("e2e")
    page.get_by_role("button", name="Submit run").click()
    expect(page).to_have_url(EXECUTION_URL)
    execution_id = EXECUTION_URL.search(page.url).group(1)  # type: ignore[union-attr]
    page.evaluate("window.stillTheSamePage = true")
    status = page.locator("#live .facts .status").first
    progress = page.locator("#live .progress")
    expect(progress.locator(".count")).to_have_text("0/2")
    stack.start_worker()
    expect(progress.locator(".count")).to_have_text("2/2")
    expect(progress.locator("progress")).to_have_attribute("value", "2")
    expect(status).to_have_text("PASSED")
    assert page.evaluate("window.stillTheSamePage") is True
    execution = stack.get(execution_id)
    assert (execution["priority"], execution["trigger_kind"]) == ("HIGH", "manual")
    assert (execution["branch"], execution["environment"]) == ("main", "e2e")
    # The lineage graph links the run to its two members, each drawn with its status.
    members = page.locator("svg.lineage-graph a")
    expect(members).to_have_count(3)
    expect(page.locator("svg.lineage-graph a[aria-label$='PASSED (child)']")).to_have_count(2)
    shot(page, "ui-suite-run.png")

    page.goto(f"{stack.api_url}/ui/suites/{suite.json()['id']}")
    expect(page.locator(f'tr[data-id="{execution_id}"] .status')).to_have_text("PASSED")
    shot(page, "ui-suite.png")


def test_a_case_is_edited_and_submitted_from_its_page_and_a_viewer_may_do_neither(
    stack: Stack, page: Any
) -> None:
    case = stack.create_case([{"name": "greet", "run": ["echo", "hello"]}], name="greets")
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.goto(f"{stack.api_url}/ui/cases/{case['id']}")
    expect(page.get_by_role("heading", name="Definition")).to_be_visible()
    page.get_by_text("Edit this case").click()
    spec = page.get_by_label("Spec (JSON)")
    spec.fill('{"workspace": "demo", "steps": [{"name": "greet", "run": ["echo", "hello"]}')
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("spec: not valid JSON")
    spec.fill('{"workspace": "demo", "steps": [{"name": "greet", "run": ["echo", "hello, again"]}]}')
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Saved: this is version 2.")
    expect(page.locator("pre.spec")).to_contain_text("hello, again")

    page.get_by_label("Priority").select_option("LOW")
    page.get_by_role("button", name="Submit run").click()
    expect(page).to_have_url(EXECUTION_URL)
    expect(page.locator("#live .facts .status").first).to_have_text("PASSED")
    expect(page.locator(".step", has_text="greet").locator("pre")).to_contain_text("hello, again")
    page.goto(f"{stack.api_url}/ui/cases/{case['id']}")
    expect(page.locator("tbody#rows .status").first).to_have_text("PASSED")
    shot(page, "ui-case.png")

    name, password = make_user(stack, "viewer")
    page.context.clear_cookies()
    sign_in(page, stack, name, password)
    page.goto(f"{stack.api_url}/ui/cases/{case['id']}")
    expect(page.get_by_role("heading", name="Definition")).to_be_visible()
    expect(page.get_by_role("button", name="Submit run")).to_have_count(0)
    expect(page.get_by_role("button", name="Save changes")).to_have_count(0)
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    forged = page.request.post(f"{stack.api_url}/ui/cases/{case['id']}/submit", form={"csrf_token": csrf})
    assert forged.status == 403 and "tester role or higher" in forged.text()
    runs = stack.client.get("/api/v1/executions", params={"test_case_id": case["id"]}).json()["items"]
    assert len(runs) == 1
