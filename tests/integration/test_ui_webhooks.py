"""The webhooks page in-process: a maintainer sees each subscription with its filters by name, its
delivery counts and latest deliveries, sends a test event and pauses it; a viewer gets no link and
a 403; a form without its CSRF token is refused."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.settings import get_settings
from scheduler.deliveries import deliver_due
from tests.integration.runs import pytest_case, run_suite, suite_with_gate
from tests.integration.ui_support import csrf_of, sign_in
from tests.webhook_receiver import Receiver

MakeUser = Callable[[Role, str], str]
Headers = dict[str, str]


def section(html: str, webhook_id: str) -> str:
    return html.split(f'data-webhook="{webhook_id}"')[1].split("</section>")[0]


def test_a_maintainer_sees_deliveries_sends_a_test_event_and_pauses(
    client: TestClient, user: MakeUser, auth: Callable[..., Headers], session: Session
) -> None:
    maintainer = auth(Role.MAINTAINER)
    case = pytest_case(session)
    suite_id = suite_with_gate(client, maintainer, [case], None)
    receiver = Receiver().start()
    try:
        body: dict[str, Any] = {
            "url": receiver.url, "events": ["execution.finished"], "name": "team chat",
            "suites": [suite_id], "statuses": ["FAILED"],
        }  # fmt: skip
        hook = client.post("/api/v1/webhooks", json=body, headers=maintainer).json()
        run_suite(client, maintainer, suite_id, [{"t.py::a": "failed"}])
        with httpx.Client(timeout=5) as http, ThreadPoolExecutor(2) as pool:
            assert deliver_due(get_settings(), http, pool) == 1
        sign_in(client, user(Role.MAINTAINER, "mara"))
        page = client.get("/ui/webhooks")
        assert page.status_code == 200 and 'href="/ui/webhooks"' in page.text
        mine = section(page.text, hook["id"])
        suite_name = client.get(f"/api/v1/test-suites/{suite_id}", headers=maintainer).json()["name"]
        assert "team chat" in mine and f'suite <a href="/ui/suites/{suite_id}">{suite_name}</a>' in mine
        assert "ending FAILED" in mine and "1 delivered, 0 waiting, 0 failed" in mine
        assert "<td>execution.finished" in mine and "<td>200</td>" in mine and "ms</td>" in mine
        token = csrf_of(page.text)
        sent = client.post(
            f"/ui/webhooks/{hook['id']}/test", data={"csrf_token": token}, follow_redirects=False
        )
        assert sent.status_code == 303
        assert "1 delivered, 1 waiting" in section(client.get("/ui/webhooks").text, hook["id"])
        paused = client.post(
            f"/ui/webhooks/{hook['id']}/pause", data={"csrf_token": token}, follow_redirects=False
        )
        assert paused.status_code == 303
        mine = section(client.get("/ui/webhooks").text, hook["id"])
        assert "paused" in mine and f'action="/ui/webhooks/{hook["id"]}/resume"' in mine
        assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=maintainer).json()["enabled"] is False
        refused = client.post(f"/ui/webhooks/{hook['id']}/resume", data={}, follow_redirects=False)
        assert refused.status_code == 403
    finally:
        receiver.stop()


def test_a_viewer_has_no_webhooks_page(client: TestClient, user: MakeUser) -> None:
    sign_in(client, user(Role.VIEWER, "vera"))
    runs = client.get("/ui/executions")
    assert runs.status_code == 200 and 'href="/ui/webhooks"' not in runs.text
    assert client.get("/ui/webhooks").status_code == 403
