"""Accounts: login throttling, username and password rules, user management, token revocation."""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from anvil.domain.enums import Role
from db.session import new_session
from tests.integration.support import problem

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

Headers = dict[str, str]
TOKEN = "/api/v1/auth/token"
USERS = "/api/v1/users"
GOOD_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def client_at(client: TestClient) -> Iterator[Callable[[str], TestClient]]:
    """``client_at("10.0.0.7")``: a client of the same app seen coming from that address."""
    made: list[TestClient] = []

    def at(address: str) -> TestClient:
        c = TestClient(client.app, client=(address, 40000))
        made.append(c)
        return c

    yield at
    for c in made:
        c.close()


def login(client: TestClient, username: str, password: str = "pw") -> object:
    return client.post(TOKEN, data={"username": username, "password": password})


def bearer(response: object) -> Headers:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {response.json()['access_token']}"}  # type: ignore[attr-defined]


def expire_lockouts() -> None:
    """As if every lockout had run out (instead of sleeping through it)."""
    with new_session() as s, s.begin():
        s.execute(text("UPDATE login_throttles SET locked_until = now() - interval '1 second'"))


# ---- login throttling ------------------------------------------------------------------------------


def test_wrong_passwords_lock_the_username_out_with_429_and_retry_after_others_unaffected(
    client: TestClient, auth: Callable[..., Headers], caplog: pytest.LogCaptureFixture
) -> None:
    auth(Role.TESTER, "tess")
    auth(Role.TESTER, "bob")
    with caplog.at_level(logging.WARNING, logger="anvil.auth"):
        for _ in range(5):  # ANVIL_LOGIN_USER_FAILURES
            problem(login(client, "tess", "wrong"), 401)
        # Locked: even the right password is refused, without being checked.
        locked = login(client, "tess", "pw")
    body = problem(locked, 429)
    assert body["title"] == "Too many requests"
    assert locked.headers["retry-after"] == "2"  # ANVIL_LOGIN_LOCKOUT_S
    assert "try again in 2 s" in body["detail"]
    assert any("login locked for user after 5 failed sign-ins" in r.getMessage() for r in caplog.records)
    # Another user, from the same address, signs in as usual.
    bearer(login(client, "bob"))


def test_the_lockout_doubles_with_each_further_failure_and_a_success_resets_it(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    auth(Role.VIEWER, "vera")
    for _ in range(5):
        login(client, "vera", "wrong")
    assert login(client, "vera").headers["retry-after"] == "2"
    expire_lockouts()
    problem(login(client, "vera", "wrong"), 401)  # the 6th failure in a row
    assert problem(login(client, "vera"), 429) and login(client, "vera").headers["retry-after"] == "4"
    expire_lockouts()
    problem(login(client, "vera", "wrong"), 401)  # 7th
    assert login(client, "vera").headers["retry-after"] == "8"
    expire_lockouts()
    bearer(login(client, "vera"))
    # The count starts again: one wrong password is a plain 401, and the next login works.
    problem(login(client, "vera", "wrong"), 401)
    bearer(login(client, "vera"))


def test_unknown_usernames_are_locked_out_the_same_way(client: TestClient) -> None:
    for _ in range(5):
        problem(login(client, "nobody", "wrong"), 401)
    problem(login(client, "nobody", "wrong"), 429)


def test_one_address_trying_many_usernames_is_locked_out_other_addresses_are_not(
    client_at: Callable[[str], TestClient], auth: Callable[..., Headers]
) -> None:
    auth(Role.TESTER, "tess")
    attacker, colleague = client_at("192.0.2.66"), client_at("192.0.2.10")
    for n in range(20):  # ANVIL_LOGIN_ADDRESS_FAILURES, one wrong password per username
        problem(login(attacker, f"guess-{n}", "wrong"), 401)
    locked = login(attacker, "tess")
    problem(locked, 429)
    assert int(locked.headers["retry-after"]) >= 1
    bearer(login(colleague, "tess"))


# ---- username and password rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "field", "says"),
    [
        ("", GOOD_PASSWORD, "body.username", "1 to 64 characters"),
        ("x" * 65, GOOD_PASSWORD, "body.username", "1 to 64 characters"),
        ("with space", GOOD_PASSWORD, "body.username", "letters, digits"),
        ("semi;colon", GOOD_PASSWORD, "body.username", "letters, digits"),
        ("ok.name", "a", "body.password", "at least 12 characters"),
        ("ok.name", "short-pass1", "body.password", "at least 12 characters"),
        ("ok.name", "QwertyUiop!2024", "body.password", "most common passwords"),
        ("ok.name", "qwertyqwerty", "body.password", "most common passwords"),
        ("ok.name", "Password12345678", "body.password", "most common passwords"),
        ("ok.name", "zzzzzzzzzzzzzzzz", "body.password", "most common passwords"),
        ("ok.name", "x" * 257, "body.password", "at most 256"),
    ],
)
def test_usernames_and_passwords_that_break_the_rules_are_422_naming_the_field(
    client: TestClient, auth: Callable[..., Headers], username: str, password: str, field: str, says: str
) -> None:
    body = {"username": username, "password": password, "role": "tester"}
    found = problem(client.post(USERS, json=body, headers=auth(Role.ADMIN)), 422, field)
    assert says in found["detail"]


def test_a_good_username_and_password_make_a_user_who_can_sign_in(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    body = {"username": "ci.bot@example-1", "password": GOOD_PASSWORD, "role": "maintainer"}
    created = client.post(USERS, json=body, headers=auth(Role.ADMIN))
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "maintainer" and "password" not in str(created.json())
    assert login(client, "ci.bot@example-1", GOOD_PASSWORD).json()["role"] == "maintainer"
    problem(client.post(USERS, json=body, headers=auth(Role.ADMIN)), 409, "username")


def test_a_new_password_follows_the_rules_too(client: TestClient, auth: Callable[..., Headers]) -> None:
    admin = auth(Role.ADMIN)
    tess = _user_id(client, admin, auth, "tess")
    problem(
        client.patch(f"{USERS}/{tess}", json={"password": "letmein"}, headers=admin), 422, "body.password"
    )
    change = {"current_password": "pw", "new_password": "password123456"}
    own = client.post("/api/v1/auth/password", json=change, headers=auth(Role.TESTER, "tess"))
    problem(own, 422, "body.new_password")


# ---- user management: who may do what ----------------------------------------------------------------


def _user_id(client: TestClient, admin: Headers, auth: Callable[..., Headers], name: str) -> str:
    auth(Role.TESTER, name)
    users = client.get(USERS, headers=admin).json()["items"]
    return next(u["id"] for u in users if u["username"] == name)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TESTER, Role.MAINTAINER])
def test_only_admins_list_read_create_and_change_users(
    client: TestClient, auth: Callable[..., Headers], role: Role
) -> None:
    tess = _user_id(client, auth(Role.ADMIN), auth, "tess")
    headers = auth(role)
    problem(client.get(USERS, headers=headers), 403)
    problem(client.get(f"{USERS}/{tess}", headers=headers), 403)
    problem(client.patch(f"{USERS}/{tess}", json={"role": "admin"}, headers=headers), 403)
    new = {"username": "newbie", "password": GOOD_PASSWORD}
    problem(client.post(USERS, json=new, headers=headers), 403)
    problem(client.get(USERS), 401)


def test_an_admin_lists_reads_and_changes_users(client: TestClient, auth: Callable[..., Headers]) -> None:
    admin = auth(Role.ADMIN, "ada")
    tess = _user_id(client, admin, auth, "tess")
    listed = client.get(USERS, headers=admin).json()["items"]
    assert {"ada", "tess"} <= {u["username"] for u in listed}
    assert all(set(u) == {"id", "username", "role", "is_active", "created_at"} for u in listed)
    assert client.get(f"{USERS}/{tess}", headers=admin).json()["username"] == "tess"
    changed = client.patch(f"{USERS}/{tess}", json={"role": "maintainer"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["role"] == "maintainer"
    problem(client.get(f"{USERS}/{uuid.uuid4()}", headers=admin), 404)
    problem(client.patch(f"{USERS}/{tess}", json={"is_active": 1}, headers=admin), 422, "body.is_active")
    problem(client.patch(f"{USERS}/{tess}", json={"role": "root"}, headers=admin), 422, "body.role")


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN, "ada")
    me = next(u["id"] for u in client.get(USERS, headers=admin).json()["items"] if u["username"] == "ada")
    problem(client.patch(f"{USERS}/{me}", json={"role": "tester"}, headers=admin), 409)
    problem(client.patch(f"{USERS}/{me}", json={"is_active": False}, headers=admin), 409)
    auth(Role.ADMIN, "second-admin")
    assert client.patch(f"{USERS}/{me}", json={"role": "tester"}, headers=admin).status_code == 200


# ---- tokens revoked when a user changes -------------------------------------------------------------


@pytest.mark.parametrize(
    "change", [{"role": "viewer"}, {"is_active": False}, {"password": "a-brand-new-passphrase"}]
)
def test_tokens_are_revoked_when_an_admin_changes_role_active_or_password(
    client: TestClient, auth: Callable[..., Headers], change: dict[str, object]
) -> None:
    admin = auth(Role.ADMIN)
    tess = _user_id(client, admin, auth, "tess")
    issued = auth(Role.TESTER, "tess")
    signed_in = bearer(login(client, "tess"))
    assert client.get("/api/v1/test-cases", headers=signed_in).status_code == 200
    assert client.patch(f"{USERS}/{tess}", json=change, headers=admin).status_code == 200
    if change == {"is_active": False}:
        for headers in (issued, signed_in):
            assert "disabled" in problem(client.get("/api/v1/test-cases", headers=headers), 401)["detail"]
        problem(login(client, "tess"), 401)
        # Active again: the tokens from before stay revoked.
        assert client.patch(f"{USERS}/{tess}", json={"is_active": True}, headers=admin).status_code == 200
    for headers in (issued, signed_in):
        revoked = problem(client.get("/api/v1/test-cases", headers=headers), 401)
        assert revoked["title"] == "Token revoked" and revoked["detail"].startswith("token revoked")
    if "password" in change:
        problem(login(client, "tess"), 401)
        again = bearer(login(client, "tess", "a-brand-new-passphrase"))
        assert client.get("/api/v1/test-cases", headers=again).status_code == 200
    elif "role" in change:
        assert login(client, "tess").json()["role"] == "viewer"
    else:
        bearer(login(client, "tess"))


def test_a_user_changes_their_own_password_and_their_old_tokens_stop_working(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    old = auth(Role.VIEWER, "vera")
    change = {"current_password": "not-it", "new_password": GOOD_PASSWORD}
    problem(client.post("/api/v1/auth/password", json=change, headers=old), 403, "body.current_password")
    change["current_password"] = "pw"
    changed = client.post("/api/v1/auth/password", json=change, headers=old)
    fresh = bearer(changed)
    assert changed.json()["role"] == "viewer"
    assert client.get("/api/v1/test-cases", headers=fresh).status_code == 200
    assert problem(client.get("/api/v1/test-cases", headers=old), 401)["title"] == "Token revoked"
    problem(login(client, "vera"), 401)
    bearer(login(client, "vera", GOOD_PASSWORD))
    problem(client.post("/api/v1/auth/password", json=change), 401)


def test_wrong_current_passwords_count_towards_the_lockout(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    headers = auth(Role.TESTER, "tess")
    change = {"current_password": "guess", "new_password": GOOD_PASSWORD}
    for _ in range(5):
        problem(client.post("/api/v1/auth/password", json=change, headers=headers), 403)
    locked = client.post("/api/v1/auth/password", json={**change, "current_password": "pw"}, headers=headers)
    problem(locked, 429)
    assert locked.headers["retry-after"] == "2"
    problem(login(client, "tess"), 429)
