"""Test secrets over HTTP: admin only, values never returned, references checked, deletes guarded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.settings import Settings, get_settings
from db.models import TestSecret
from db.secrets import (
    SecretUnavailable,
    box_for,
    cases_using,
    decrypt,
    get_secret,
    put_secret,
    reveal,
)
from db.session import new_session
from tests.helpers import make_case
from tests.integration.support import count_rows, generic_case_body, problem

SECRETS = "/api/v1/secrets"
CASES = "/api/v1/test-cases"
VALUE = "dpl-7f3a9c2e-not-for-your-eyes"
Auth = Callable[..., dict[str, str]]


@pytest.fixture
def admin(auth: Auth) -> dict[str, str]:
    return auth(Role.ADMIN, "root")


def put(client: TestClient, headers: dict[str, str], name: str, value: str = VALUE) -> Any:
    return client.put(f"{SECRETS}/{name}", json={"value": value}, headers=headers)


def case_with(env: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return generic_case_body(spec={"workspace": "demo", "steps": [{"run": ["true"], "env": env}]}, **extra)


def test_an_admin_sets_lists_and_replaces_secrets_without_ever_seeing_a_value(
    client: TestClient, admin: dict[str, str], auth: Auth
) -> None:
    created = put(client, admin, "deploy-token")
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{SECRETS}/deploy-token"
    body = created.json()
    assert body["name"] == "deploy-token" and body["created_by_name"] == "root"
    assert body["created_at"] == body["updated_at"]
    assert "value" not in body and VALUE not in created.text

    other_admin = auth(Role.ADMIN, "other-root")
    replaced = put(client, other_admin, "deploy-token", "a-new-value-entirely")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["created_by_name"] == "root"
    assert replaced.json()["updated_by_name"] == "other-root"
    assert replaced.json()["updated_at"] > replaced.json()["created_at"]
    assert put(client, admin, "a.second_one").status_code == 201

    listed = client.get(SECRETS, headers=admin)
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["items"]] == ["a.second_one", "deploy-token"]
    assert VALUE not in listed.text and "a-new-value-entirely" not in listed.text
    shown = client.get(f"{SECRETS}/deploy-token", headers=admin)
    assert shown.status_code == 200 and set(shown.json()) == set(body)
    problem(client.get(f"{SECRETS}/nope", headers=admin), 404)

    # Stored encrypted: the column holds no plaintext, and the key of ANVIL_SECRETS_KEY reads it.
    with new_session() as s:
        stored = s.scalar(select(TestSecret.value_encrypted).where(TestSecret.name == "deploy-token"))
        dump = s.execute(text("SELECT string_agg(t::text, ' ') FROM test_secrets t")).scalar_one()
    assert stored is not None and "a-new-value-entirely" not in dump and VALUE not in dump
    box = box_for(get_settings())
    assert decrypt(box, name="deploy-token", token=stored) == "a-new-value-entirely"


@pytest.mark.parametrize("role", [Role.MAINTAINER, Role.TESTER, Role.VIEWER])
def test_only_admins_may_touch_secrets(
    client: TestClient, admin: dict[str, str], auth: Auth, role: Role
) -> None:
    assert put(client, admin, "deploy-token").status_code == 201
    someone = auth(role)
    problem(put(client, someone, "deploy-token", "overwritten"), 403)
    problem(put(client, someone, "new-one"), 403)
    problem(client.get(SECRETS, headers=someone), 403)
    problem(client.get(f"{SECRETS}/deploy-token", headers=someone), 403)
    problem(client.delete(f"{SECRETS}/deploy-token", headers=someone), 403)
    problem(client.get(SECRETS), 401)
    names = [s["name"] for s in client.get(SECRETS, headers=admin).json()["items"]]
    assert names == ["deploy-token"]
    with new_session() as s:
        stored = s.scalar(select(TestSecret.value_encrypted))
    assert stored is not None
    assert decrypt(box_for(get_settings()), name="deploy-token", token=stored) == VALUE


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("has space", {"value": "v"}, "path.name"),
        ("x" * 65, {"value": "v"}, "path.name"),
        (".hidden", {"value": "v"}, "path.name"),
        ("-x", {"value": "v"}, "path.name"),
        ("slash%2Fname", {"value": "v"}, None),
        ("ok", {"value": ""}, "body.value"),
        ("ok", {"value": "a\u0000b"}, None),
        ("ok", {"value": "x" * (32 * 1024 + 1)}, "body.value"),
        ("ok", {"value": 5}, "body.value"),
        ("ok", {}, "body.value"),
        ("ok", {"value": "v", "name": "other"}, "body.name"),
    ],
)
def test_bad_names_and_values_are_refused(
    client: TestClient, admin: dict[str, str], name: str, body: dict[str, Any], field: str | None
) -> None:
    response = client.put(f"{SECRETS}/{name}", json=body, headers=admin)
    assert response.status_code in (404, 422), response.text
    problem(response, response.status_code, field)
    assert "a\u0000b" not in response.text
    assert client.get(SECRETS, headers=admin).json()["items"] == []


@pytest.fixture
def no_secrets_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ANVIL_SECRETS_KEY")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_without_a_secrets_key_values_cannot_be_stored(
    client: TestClient, admin: dict[str, str], no_secrets_key: None
) -> None:
    found = problem(put(client, admin, "deploy-token"), 503)
    assert "ANVIL_SECRETS_KEY" in found["detail"]
    assert client.get(SECRETS, headers=admin).json()["items"] == []
    problem(put(client, {}, "deploy-token"), 401)


def test_a_case_naming_an_unknown_secret_is_refused_naming_the_field_and_secret(
    client: TestClient, admin: dict[str, str], auth: Auth
) -> None:
    maintainer = auth(Role.MAINTAINER)
    before = count_rows()
    body = case_with({"A": "plain", "TOKEN": {"secret": "deploy-token"}})
    refused = problem(
        client.post(CASES, json=body, headers=maintainer),
        422,
        "body.spec.steps.0.env.TOKEN",
    )
    assert "deploy-token" in refused["detail"] and refused["secret"] == "deploy-token"
    pytest_case = {
        **generic_case_body(),
        "kind": "pytest",
        "spec": {"workspace": "demo", "args": [], "env": {"T": {"secret": "ci-key"}}},
    }
    problem(client.post(CASES, json=pytest_case, headers=maintainer), 422, "body.spec.env.T")
    assert count_rows() == before

    assert put(client, admin, "deploy-token").status_code == 201
    made = client.post(CASES, json=case_with({"TOKEN": {"secret": "deploy-token"}}), headers=maintainer)
    assert made.status_code == 201, made.text
    # Readers see the reference, never the value.
    shown = client.get(f"{CASES}/{made.json()['id']}", headers=auth(Role.VIEWER))
    assert shown.json()["spec"]["steps"][0]["env"] == {"TOKEN": {"secret": "deploy-token"}}
    assert VALUE not in shown.text

    # A change that names an unknown secret is refused too, and changes nothing.
    patch = {"spec": {"workspace": "demo", "steps": [{"run": ["true"], "env": {"X": {"secret": "nope"}}}]}}
    problem(
        client.patch(f"{CASES}/{made.json()['id']}", json=patch, headers=maintainer),
        422,
        "body.spec.steps.0.env.X",
    )
    assert client.get(f"{CASES}/{made.json()['id']}", headers=maintainer).json()["version"] == 1


def test_a_secret_named_by_a_case_cannot_be_deleted(
    client: TestClient, admin: dict[str, str], auth: Auth
) -> None:
    maintainer = auth(Role.MAINTAINER)
    assert put(client, admin, "deploy-token").status_code == 201
    assert put(client, admin, "unused").status_code == 201
    cases = [
        client.post(
            CASES, json=case_with({"TOKEN": {"secret": "deploy-token"}}, name=name), headers=maintainer
        ).json()
        for name in ("uses it", "uses it too")
    ]
    refused = problem(client.delete(f"{SECRETS}/deploy-token", headers=admin), 409)
    assert "'uses it'" in refused["detail"] and "'uses it too'" in refused["detail"]
    assert refused["test_cases"] == ["uses it", "uses it too"]

    assert client.delete(f"{SECRETS}/unused", headers=admin).status_code == 204
    # Once no live case names it (one changed, one deleted), it can go.
    plain = {"spec": {"workspace": "demo", "steps": [{"run": ["true"], "env": {"TOKEN": "plain"}}]}}
    assert client.patch(f"{CASES}/{cases[0]['id']}", json=plain, headers=maintainer).status_code == 200
    assert client.delete(f"{CASES}/{cases[1]['id']}", headers=maintainer).status_code == 204
    assert client.delete(f"{SECRETS}/deploy-token", headers=admin).status_code == 204
    assert client.get(SECRETS, headers=admin).json()["items"] == []
    problem(client.delete(f"{SECRETS}/deploy-token", headers=admin), 404)


# ---- data access, on PostgreSQL and on SQLite (standalone mode) -----------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def any_session(request: pytest.FixtureRequest) -> Session:
    fixture = "session" if request.param == "postgresql" else "sqlite_session"
    return cast(Session, request.getfixturevalue(fixture))


def test_what_a_worker_reads_and_what_stops_it(any_session: Session) -> None:
    box = box_for(get_settings())
    with any_session.begin():
        put_secret(any_session, name="one", value="first value", box=box, actor=None)
        put_secret(any_session, name="two", value="second value", box=box, actor=None)
    assert reveal(any_session, names={"one", "two"}, box=box) == {"one": "first value", "two": "second value"}
    with pytest.raises(SecretUnavailable, match="'gone'.*no longer exist"):
        reveal(any_session, names={"one", "gone"}, box=box)
    with pytest.raises(SecretUnavailable, match="no ANVIL_SECRETS_KEY"):
        reveal(any_session, names={"one"}, box=None)
    with pytest.raises(SecretUnavailable, match="cannot be decrypted"):
        reveal(any_session, names={"one"}, box=box_for(Settings(secrets_key="another-key-" + "x" * 30)))
    # A ciphertext moved to another row does not decrypt there.
    any_session.rollback()  # end the reads' transaction
    with any_session.begin():
        one, two = (get_secret(any_session, name=n) for n in ("one", "two"))
        two.value_encrypted = one.value_encrypted
    with pytest.raises(SecretUnavailable, match="another secret"):
        reveal(any_session, names={"two"}, box=box)


def test_cases_naming_a_secret_are_found_in_every_env_map(any_session: Session) -> None:
    specs = {
        "step": {"workspace": "w", "steps": [{"run": ["true"], "env": {"A": {"secret": "s1"}}}]},
        "pytest": {"workspace": "w", "args": [], "env": {"B": {"secret": "s1"}}},
        "bdd": {"workspace": "w", "feature": "f.feature", "env": {"C": {"secret": "s2"}}},
        "plain": {"workspace": "w", "steps": [{"run": ["true"], "env": {"secret": "s1"}}]},
    }
    for name, spec in specs.items():
        make_case(any_session, name=name, spec=spec)
    deleted = make_case(any_session, name="deleted", spec=specs["step"])
    with any_session.begin():
        deleted.deleted_at = deleted.created_at
    assert cases_using(any_session, ["s1", "s2", "s3"]) == {"s1": ["pytest", "step"], "s2": ["bdd"]}
