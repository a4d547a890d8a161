"""Manual testing in a real headless Chromium against real `anvil api`, `worker` and `beat`
processes: a tester takes a test from the queue and performs it step by step to PASSED; a second
tester, in a browser of their own, sees the queue change without reloading and finds it taken.
"""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.browser import expect, make_user, shot, sign_in
from tests.e2e.conftest import Stack

STEPS = [
    {"action": "Open the login page", "expected": "The form is shown"},
    {"action": "Log in as alice", "expected": "The dashboard greets alice"},
    {"action": "Log out", "expected": "Back on the login page"},
]
ACTUALS = ["The form is shown", "Hello, alice", "Back on the login page"]


def manual_execution(stack: Stack, name: str) -> str:
    spec = {"instructions": "Use the staging site with a fresh browser profile.", "steps": STEPS}
    case = stack.client.post("/api/v1/test-cases", json={"name": name, "kind": "manual", "spec": spec})
    assert case.status_code == 201, case.text
    execution_id = str(stack.submit(case.json()["id"])["id"])
    stack.wait_status(execution_id, {"PAUSED"})  # the worker handed it to testers
    return execution_id


def second_tester(stack: Stack) -> tuple[str, str]:
    name, password = "tester-two", "Correct-Horse-Battery-7"
    response = stack.client.post(
        "/api/v1/users", json={"username": name, "password": password, "role": "tester"}
    )
    assert response.status_code == 201, response.text
    return name, password


def test_a_tester_performs_a_manual_test_to_passed(stack: Stack, page: Any) -> None:
    execution_id = manual_execution(stack, "login by hand")
    name, password = make_user(stack, "tester")
    sign_in(page, stack, name, password)
    page.get_by_role("link", name="Manual testing").click()
    expect(page.get_by_role("heading", name="Manual testing", exact=True)).to_be_visible()
    row = page.locator(f'tr[data-id="{execution_id}"]')
    expect(row).to_contain_text("login by hand")
    row.get_by_role("button", name="Take login by hand").click()

    expect(page.get_by_text("You are performing this test")).to_be_visible()
    expect(page.get_by_text("Use the staging site with a fresh browser profile.")).to_be_visible()
    for seq, actual in enumerate(ACTUALS, start=1):
        step = page.locator(f"#step-{seq}")
        expect(step).to_contain_text(STEPS[seq - 1]["expected"])
        step.get_by_label("passed").check()
        step.get_by_label("Actual result").fill(actual)
        if seq == 2:
            step.get_by_label("Comment").fill("greeting took 3 s")
            page.evaluate("window.scrollTo(0, 0)")
            shot(page, "ui-manual.png")
        step.get_by_role("button", name=f"Record step {seq}").click()
        expect(page.locator(f"#step-{seq} .actual")).to_have_text(actual)

    expect(page.locator(".manual-final")).to_contain_text("PASSED")
    expect(page.get_by_role("button", name=re.compile(r"^Record step"))).to_have_count(0)
    final = stack.get(execution_id, include="steps")
    assert final["status"] == "PASSED"
    assert [s["status"] for s in final["steps"]] == ["passed"] * 3
    assert [s["details"]["actual"] for s in final["steps"]] == ACTUALS
    assert final["steps"][1]["details"]["comment"] == "greeting took 3 s"
    assert {s["details"]["recorded_by"] for s in final["steps"]} == {name}


def test_a_second_tester_sees_the_test_taken_without_reloading(stack: Stack, page: Any, browser: Any) -> None:
    execution_id = manual_execution(stack, "checkout by hand")
    still_waiting = manual_execution(stack, "signup by hand")
    first, first_password = make_user(stack, "tester")
    second, second_password = second_tester(stack)
    other = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        watcher = other.new_page()
        sign_in(watcher, stack, second, second_password)
        watcher.goto(f"{stack.api_url}/ui/manual")
        watcher.evaluate("window.stillTheSamePage = true")
        waiting = watcher.locator("section", has=watcher.get_by_role("heading", name=re.compile("^Waiting")))
        expect(waiting.locator(f'tr[data-id="{execution_id}"]')).to_be_visible()

        sign_in(page, stack, first, first_password)
        page.goto(f"{stack.api_url}/ui/manual/{execution_id}")
        page.get_by_role("button", name="Take this test").click()
        expect(page.get_by_text("You are performing this test")).to_be_visible()

        # The second tester's queue moves it to "Taken by other testers", naming who took it.
        others = watcher.locator(
            "section", has=watcher.get_by_role("heading", name=re.compile("^Taken by other"))
        )
        expect(others.locator(f'tr[data-id="{execution_id}"] .taken-by')).to_have_text(first)
        expect(waiting.locator(f'tr[data-id="{execution_id}"]')).to_have_count(0)
        expect(waiting.locator(f'tr[data-id="{still_waiting}"]')).to_be_visible()
        assert watcher.evaluate("window.stillTheSamePage") is True
        shot(watcher, "ui-manual-queue.png")

        others.get_by_role("link", name="checkout by hand").click()
        expect(watcher.locator(".manual-taken")).to_contain_text(
            re.compile(rf"Taken by {first} since \d{{4}}-")
        )
        expect(watcher.get_by_role("button", name=re.compile(r"^(Record step|Take|Release)"))).to_have_count(
            0
        )
        csrf = watcher.locator('input[name="csrf_token"]').first.get_attribute("value")
        forged = watcher.request.post(
            f"{stack.api_url}/ui/manual/{execution_id}/steps/1",
            form={"csrf_token": csrf, "status": "failed", "actual": "not mine to record"},
        )
        assert forged.status == 403 and "only the tester this execution is assigned to" in forged.text()
    finally:
        other.close()
    steps = stack.client.get(f"/api/v1/executions/{execution_id}/steps").json()
    assert [s["status"] for s in steps] == ["not_run"] * 3
    assert stack.get(execution_id)["status"] == "PAUSED"
