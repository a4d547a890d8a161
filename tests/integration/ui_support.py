"""What the web interface's integration tests share: signing in through the form, the CSRF token
of a page. (The ``user`` fixture that makes users is in tests/integration/conftest.py.)"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a csrf_token"
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str = "pw", next_: str | None = None) -> object:
    page = client.get("/ui/login", params={"next": next_} if next_ else None)
    assert page.status_code == 200
    form = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    if next_:
        form["next"] = next_
    return client.post("/ui/login", data=form, follow_redirects=False)
