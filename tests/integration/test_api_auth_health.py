"""Health endpoints and the token endpoint."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from anvil.domain.enums import Role
from tests.integration.support import problem

TOKEN = "/api/v1/auth/token"


def test_healthz_and_readyz_need_no_token(client: TestClient) -> None:
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_a_password_form_gets_a_working_token(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    auth(Role.TESTER, "tess")  # password "pw"
    r = client.post(TOKEN, data={"username": "tess", "password": "pw"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "tester" and body["expires_in"] > 0
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/v1/test-cases", headers=headers).status_code == 200
    # The token carries the tester role: defining cases stays forbidden.
    problem(client.post("/api/v1/test-cases", json={}, headers=headers), 403)


def test_wrong_password_or_unknown_user_is_one_and_the_same_401(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    auth(Role.ADMIN, "ada")
    wrong = client.post(TOKEN, data={"username": "ada", "password": "nope"})
    unknown = client.post(TOKEN, data={"username": "nobody", "password": "pw"})
    for r in (wrong, unknown):
        found = problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
    # The answer does not reveal which usernames exist.
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "access_token" not in found


def test_missing_form_fields_are_named(client: TestClient) -> None:
    problem(client.post(TOKEN, data={"username": "ada"}), 422, "body.password")
    problem(client.post(TOKEN, json={"username": "ada", "password": "pw"}), 422)
