"""API tokens for bots: created (shown once, stored hashed), used as bearer tokens, listed, revoked."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from anvil.domain.enums import Role
from db.session import new_session
from db.types import utcnow
from tests.integration.support import generic_case_body, problem

Headers = dict[str, str]
TOKENS = "/api/v1/tokens"
CASES = "/api/v1/test-cases"


def create(client: TestClient, headers: Headers, **body: object) -> dict[str, object]:
    response = client.post(TOKENS, json={"name": "ci", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def bearer(created: dict[str, object]) -> Headers:
    return {"Authorization": f"Bearer {created['token']}"}


def sql(statement: str, **params: object) -> list[tuple[object, ...]]:
    with new_session() as s, s.begin():
        result = s.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def test_a_token_is_shown_once_stored_hashed_and_acts_with_its_role(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    maintainer = auth(Role.MAINTAINER, "mia")
    created = create(client, maintainer, role="tester")
    token = str(created["token"])
    assert token.startswith("anvil_") and len(token) >= 40
    assert created["role"] == "tester" and created["username"] == "mia" and created["expires_at"]
    [(stored,)] = sql("SELECT token_hash FROM api_tokens WHERE id = :id", id=created["id"])
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(sql("SELECT * FROM api_tokens"))
    # The listing never shows the token again.
    listed = client.get(TOKENS, headers=maintainer).json()["items"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]

    assert client.get(CASES, headers=bearer(created)).status_code == 200
    # A tester token of a maintainer: defining cases (maintainer+) stays forbidden.
    problem(client.post(CASES, json=generic_case_body(), headers=bearer(created)), 403)
    assert client.post(CASES, json=generic_case_body(), headers=maintainer).status_code == 201


def test_a_token_role_is_at_most_its_creators_and_defaults_to_it(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    tester = auth(Role.TESTER)
    problem(client.post(TOKENS, json={"name": "ci", "role": "maintainer"}, headers=tester), 403, "body.role")
    assert create(client, tester)["role"] == "tester"
    assert create(client, auth(Role.VIEWER))["role"] == "viewer"


def test_bad_token_requests_are_422(client: TestClient, auth: Callable[..., Headers]) -> None:
    headers = auth(Role.TESTER)
    for body, field in [
        ({"name": ""}, "body.name"),
        ({"name": "x" * 65}, "body.name"),
        ({"name": "ci", "expires_in_days": 0}, "body.expires_in_days"),
        ({"name": "ci", "expires_in_days": True}, "body.expires_in_days"),
        ({"name": "ci", "role": "root"}, "body.role"),
        ({"name": "ci", "token": "mine"}, "body.token"),
    ]:
        problem(client.post(TOKENS, json=body, headers=headers), 422, field)


def test_admins_see_every_token_others_their_own(client: TestClient, auth: Callable[..., Headers]) -> None:
    tess, tom, admin = auth(Role.TESTER, "tess"), auth(Role.TESTER, "tom"), auth(Role.ADMIN, "ada")
    create(client, tess, name="tess-ci")
    toms = create(client, tom, name="tom-ci")
    assert [t["name"] for t in client.get(TOKENS, headers=tess).json()["items"]] == ["tess-ci"]
    assert {t["username"] for t in client.get(TOKENS, headers=admin).json()["items"]} == {"tess", "tom"}
    # Another user's token cannot be revoked (nor seen to exist) by a non-admin.
    problem(client.delete(f"{TOKENS}/{toms['id']}", headers=tess), 404)
    assert client.get(CASES, headers=bearer(toms)).status_code == 200
    assert client.delete(f"{TOKENS}/{toms['id']}", headers=admin).status_code == 204


def test_a_revoked_token_stops_working_at_once(client: TestClient, auth: Callable[..., Headers]) -> None:
    tess = auth(Role.TESTER)
    created = create(client, tess)
    assert client.get(CASES, headers=bearer(created)).status_code == 200
    assert client.delete(f"{TOKENS}/{created['id']}", headers=tess).status_code == 204
    assert "not valid" in problem(client.get(CASES, headers=bearer(created)), 401)["detail"]
    problem(client.delete(f"{TOKENS}/{created['id']}", headers=tess), 404)
    problem(client.get(CASES, headers={"Authorization": "Bearer anvil_never-issued"}), 401)


def test_an_expired_token_is_refused(client: TestClient, auth: Callable[..., Headers]) -> None:
    created = create(client, auth(Role.TESTER), expires_in_days=1)
    sql(
        "UPDATE api_tokens SET expires_at = :t WHERE id = :id",
        t=utcnow() - timedelta(seconds=1),
        id=created["id"],
    )
    assert "expired" in problem(client.get(CASES, headers=bearer(created)), 401)["detail"]
    never = create(client, auth(Role.TESTER), expires_in_days=None)
    assert never["expires_at"] is None
    assert client.get(CASES, headers=bearer(never)).status_code == 200


def test_last_used_is_recorded_at_most_once_a_minute(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    tess = auth(Role.TESTER)
    created = create(client, tess)
    assert client.get(TOKENS, headers=tess).json()["items"][0]["last_used_at"] is None
    client.get(CASES, headers=bearer(created))
    first = client.get(TOKENS, headers=tess).json()["items"][0]["last_used_at"]
    assert first is not None
    client.get(CASES, headers=bearer(created))
    assert client.get(TOKENS, headers=tess).json()["items"][0]["last_used_at"] == first
    a_while_ago = utcnow() - timedelta(minutes=2)
    sql("UPDATE api_tokens SET last_used_at = :t WHERE id = :id", t=a_while_ago, id=created["id"])
    client.get(CASES, headers=bearer(created))
    assert client.get(TOKENS, headers=tess).json()["items"][0]["last_used_at"] > first


def test_an_api_token_cannot_create_tokens_or_change_the_password(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    created = create(client, auth(Role.ADMIN))
    problem(client.post(TOKENS, json={"name": "more"}, headers=bearer(created)), 403)
    change = {"current_password": "pw", "new_password": "correct-horse-battery-staple"}
    problem(client.post("/api/v1/auth/password", json=change, headers=bearer(created)), 403)


def test_a_token_follows_its_owner_deactivated_or_demoted(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN, "ada")
    maintainer = auth(Role.MAINTAINER, "mia")
    created = create(client, maintainer)  # role maintainer
    mia = next(
        u["id"] for u in client.get("/api/v1/users", headers=admin).json()["items"] if u["username"] == "mia"
    )
    assert client.patch(f"/api/v1/users/{mia}", json={"role": "viewer"}, headers=admin).status_code == 200
    # Capped at the owner's role now: a viewer cannot submit.
    problem(client.post(CASES, json=generic_case_body(), headers=bearer(created)), 403)
    assert client.get(CASES, headers=bearer(created)).status_code == 200
    # The owner's role in the database is unchanged by that cap.
    assert sql("SELECT role FROM users WHERE username = 'mia'") == [("viewer",)]
    assert client.patch(f"/api/v1/users/{mia}", json={"is_active": False}, headers=admin).status_code == 200
    assert "disabled" in problem(client.get(CASES, headers=bearer(created)), 401)["detail"]


def test_an_admins_tester_token_does_not_see_everyones_tokens(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    create(client, auth(Role.TESTER, "tess"), name="tess-ci")
    admin = auth(Role.ADMIN, "ada")
    own = create(client, admin, role="tester", name="ada-ci")
    assert [t["name"] for t in client.get(TOKENS, headers=bearer(own)).json()["items"]] == ["ada-ci"]
    assert sql("SELECT role FROM users WHERE username = 'ada'") == [("admin",)]
