"""The web interface as a newcomer meets it: the README's first command (`anvil dev --demo`, on the
embedded default) prints a URL and a password; signing in with them shows the sample run, its
steps and its history, with no docs read. A real Chromium against the real `anvil dev`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.e2e.browser import expect, shot
from tests.e2e.test_dev import Dev, project_dir

DEMO_TIMEOUT_S = 120


def test_a_newcomer_signs_in_with_the_printed_password_and_finds_the_sample_run_its_steps_and_history(
    tmp_path: Path, page: Any
) -> None:
    dev = Dev(project_dir(tmp_path), "--demo", "--broker", "filesystem", "--no-flower")
    try:
        signs_in_and_looks(dev, page)
    except BaseException:
        print(f"===== anvil dev output =====\n{dev.output()[-30000:]}")
        raise
    finally:
        dev.stop()


def signs_in_and_looks(dev: Dev, page: Any) -> None:
    dev.wait_up()
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while "the sample case" not in dev.output() and time.monotonic() < deadline:
        time.sleep(0.5)
    out = dev.output()
    assert "the sample case PASSED" in out, out
    url = re.search(r"Anvil is up: open (\S+) in a browser", out)
    password = re.search(r"username admin, password (\S+)", out)
    assert url and password, out

    page.goto(url.group(1))
    expect(page.get_by_role("heading", name="Sign in to Anvil")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password.group(1))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    run = page.locator("tbody tr").filter(has=page.get_by_role("link", name="hello"))
    expect(run.locator(".status")).to_have_text("PASSED")
    run.get_by_role("link", name="hello").click()

    expect(page.get_by_role("heading", name="Steps")).to_be_visible()
    for step in ("say hello", "greeting file is friendly", "workspace is the working directory"):
        expect(page.locator(".step", has_text=step).locator(".status")).to_have_text("passed")
    page.get_by_role("link", name="History of say hello").click()
    # The sample case is one test: its history strip holds the demo's run, passed.
    expect(page.locator("h1")).to_contain_text("hello")
    expect(page.locator(".strip a").first).to_have_attribute("aria-label", re.compile("passed", re.I))
    shot(page, "ui-newcomer-history.png")
