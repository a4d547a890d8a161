"""The schedules and operations pages in a real headless Chromium, against real `anvil api`,
`worker` and `beat` processes: a schedule created from the form and triggered runs to PASSED; the
operations page shows the live worker and what waits. Screenshots: docs/ui-schedules.png,
docs/ui-operations.png."""

from __future__ import annotations

import re
import socket
from typing import Any

from tests.e2e.browser import expect, shot, sign_in
from tests.e2e.conftest import Stack, StackFactory


def test_a_schedule_made_in_the_form_and_triggered_now_passes(stack: Stack, page: Any) -> None:
    case = stack.create_case([{"name": "ok", "run": ["true"]}], name="checkout-smoke")
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Name").fill("nightly-checkout")
    page.get_by_label("Test case or suite").fill(case["name"])
    page.get_by_label("Cron").fill("0 25 * * *")  # there is no hour 25
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.locator("#cron-error")).to_contain_text("not a standard five-field cron expression")
    expect(page.get_by_label("Name")).to_have_value("nightly-checkout")  # what was typed is kept
    page.get_by_label("Cron").fill("0 2 * * *")
    page.get_by_role("button", name="Create schedule").click()

    expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
    row = page.locator("tr", has_text="nightly-checkout")
    expect(row).to_contain_text("0 2 * * *")
    expect(row).to_contain_text("02:00 Europe/Berlin")  # the next fire time, in its zone
    expect(row).to_contain_text("never")
    row.get_by_role("button", name="Trigger now").click()

    expect(page).to_have_url(re.compile(r"/ui/executions/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="checkout-smoke")).to_be_visible()
    expect(page.locator("#live .facts .status").first).to_have_text("PASSED")
    execution_id = page.url.rsplit("/", 1)[1]
    assert stack.get(execution_id)["trigger_kind"] == "scheduled"

    page.goto(f"{stack.api_url}/ui/schedules")
    row = page.locator("tr", has_text="nightly-checkout")
    expect(row.locator(".status")).to_have_text("PASSED")  # its last run, linked
    expect(row.get_by_role("link", name=re.compile(r"UTC$"))).to_have_attribute(
        "href", f"/ui/executions/{execution_id}"
    )
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("tr", has_text="nightly-checkout")).to_contain_text("paused")
    page.locator("tr", has_text="nightly-checkout").get_by_role("button", name="Resume").click()
    expect(page.locator("tr", has_text="nightly-checkout")).to_contain_text("active")
    shot(page, "ui-schedules.png")


def test_the_operations_page_shows_the_live_worker_and_what_waits(
    make_stack: StackFactory, page: Any
) -> None:
    # The worker takes only "critical": a NORMAL execution waits in its queue for the page to show.
    stack = make_stack(queues="critical", env={"ANVIL_FLOWER_URL": "http://127.0.0.1:5555"})
    case = stack.create_case([{"name": "ok", "run": ["true"]}], name="waits-for-a-worker")
    waiting = stack.submit(case["id"], priority="NORMAL")["id"]
    sign_in(page, stack, "e2e-admin", "e2e-pw")
    page.goto(f"{stack.api_url}/ui/operations")
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()

    normal = page.locator('tr[data-priority="NORMAL"]')
    expect(normal.locator(".waiting")).to_have_text("1")
    expect(normal).to_contain_text("no live worker consumes it")
    worker = page.locator("tr[data-worker^='e2e1@']")
    expect(worker.locator(".host")).to_have_text(socket.gethostname())
    expect(worker).to_contain_text("live")
    expect(worker).to_contain_text("critical")
    expect(page.get_by_role("link", name="Flower")).to_have_attribute("href", "http://127.0.0.1:5555")
    shot(page, "ui-operations.png")

    # The figures follow without a reload: a critical run goes through and the count stays right.
    page.evaluate("window.stillTheSamePage = true")
    critical = stack.submit(case["id"], priority="CRITICAL")["id"]
    assert stack.wait_final(critical)["status"] == "PASSED"
    stack.client.post(f"/api/v1/executions/{waiting}/cancel")
    expect(normal.locator(".waiting")).to_have_text("0")
    assert page.evaluate("window.stillTheSamePage") is True
