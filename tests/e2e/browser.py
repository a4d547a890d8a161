"""What every browser test uses: the system Chromium driven by Playwright, signing in, screenshots.

Chromium is Debian's (.ci/run installs it): Playwright's own browser download cannot be fetched
here. Without it the browser tests are skipped, saying so. The flags keep Chromium off the
network, which is closed on the test machines. Screenshots of the pages go to docs/ (for the
README). The ``browser`` and ``page`` fixtures are in tests/e2e/conftest.py; a browser test module
imports this one first (``from tests.e2e.browser import expect, sign_in, ...``), which skips it when
Chromium or Playwright is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
WAIT_MS = 60_000  # generous: other test sessions may be loading the machine


def chromium_path() -> str:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or CHROMIUM


playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(
        f"Chromium is not installed ({CHROMIUM}); .ci/run installs it with apt-get install -y chromium",
        allow_module_level=True,
    )
expect = playwright_api.expect
expect.set_options(timeout=WAIT_MS)  # assertions wait as long as actions (their default: 5 s)


def sign_in(page: Any, stack: Stack, username: str, password: str) -> None:
    page.goto(stack.api_url + "/")  # / -> /ui/executions -> the sign-in page
    expect(page.get_by_role("heading", name="Sign in to Anvil")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def make_user(stack: Stack, role: str) -> tuple[str, str]:
    name, password = f"{role}-ui", "Correct-Horse-Battery-9"
    response = stack.client.post("/api/v1/users", json={"username": name, "password": password, "role": role})
    assert response.status_code == 201, response.text
    return name, password


def shot(page: Any, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / name))
