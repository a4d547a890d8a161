"""Bad requests get RFC 9457 problem details naming the field, and leave nothing behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.settings import get_settings
from db.models import TestCase, User
from tests.helpers import make_user
from tests.integration.support import generic_case_body, problem

CASES = "/api/v1/test-cases"
SUBMIT = "/api/v1/executions/case"
RANDOM_ID = "8f14e45f-ceea-467f-a0fd-317e60a567a9"


# (role, method, path, json body, status, field); "{case}" in a path or body is the real case's id.
BAD_REQUESTS: list[tuple[Role, str, str, Any, int, str | None]] = [
    # unknown fields
    (Role.ADMIN, "POST", CASES, generic_case_body(bogus=1), 422, "body.bogus"),
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": "{case}", "prio": "HIGH"}, 422, "body.prio"),
    (
        Role.ADMIN,
        "POST",
        CASES,
        {"name": "x", "spec": {"workspace": "demo", "steps": [{"run": ["true"], "comand": "x"}]}},
        422,
        "body.spec.steps.0.comand",
    ),
    (Role.ADMIN, "PATCH", CASES + "/{case}", {"nmae": "y"}, 422, "body.nmae"),
    # wrong types and values
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": 123}, 422, "body.test_case_id"),
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": "{case}", "params": "x=1"}, 422, "body.params"),
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": "{case}", "priority": "URGENT"}, 422, "body.priority"),
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": "{case}", "priority": "high"}, 422, "body.priority"),
    (
        Role.TESTER,
        "POST",
        SUBMIT,
        {"test_case_id": "{case}", "trigger_kind": "retry"},
        422,
        "body.trigger_kind",
    ),
    (Role.TESTER, "POST", SUBMIT, {}, 422, "body.test_case_id"),
    (Role.ADMIN, "POST", CASES, generic_case_body(timeout_s="soon"), 422, "body.timeout_s"),
    (Role.ADMIN, "POST", CASES, generic_case_body(timeout_s=10**9), 422, "body.timeout_s"),
    (Role.ADMIN, "POST", CASES, generic_case_body(tags="smoke"), 422, "body.tags"),
    (Role.ADMIN, "POST", CASES, generic_case_body(kind="shell"), 422, "body.kind"),
    (
        Role.ADMIN,
        "POST",
        CASES,
        {**generic_case_body(), "spec": {"workspace": "../up", "steps": []}},
        422,
        None,
    ),
    (Role.ADMIN, "POST", CASES, [generic_case_body()], 422, "body"),
    # unknown ids
    (Role.TESTER, "POST", SUBMIT, {"test_case_id": RANDOM_ID}, 404, "body.test_case_id"),
    (Role.VIEWER, "GET", f"/api/v1/executions/{RANDOM_ID}", None, 404, "id"),
    (Role.VIEWER, "GET", f"/api/v1/executions/{RANDOM_ID}/steps", None, 404, "id"),
    (Role.VIEWER, "GET", f"/api/v1/executions/{RANDOM_ID}/transitions", None, 404, "id"),
    (Role.VIEWER, "GET", f"{CASES}/{RANDOM_ID}", None, 404, "id"),
    (Role.ADMIN, "PATCH", f"{CASES}/{RANDOM_ID}", {"tags": []}, 404, "id"),
    (Role.ADMIN, "DELETE", f"{CASES}/{RANDOM_ID}", None, 404, "id"),
    (Role.VIEWER, "GET", "/api/v1/executions/not-a-uuid", None, 422, "path.execution_id"),
    (Role.VIEWER, "GET", f"{CASES}/12", None, 422, "path.case_id"),
    # query parameters
    (Role.VIEWER, "GET", "/api/v1/executions/{execution}?include=bogus", None, 422, "query.include"),
    (Role.VIEWER, "GET", "/api/v1/executions/{execution}?include=steps,bogus", None, 422, "query.include"),
    (Role.VIEWER, "GET", f"{CASES}?kind=shell", None, 422, "query.kind"),
    # roles
    (Role.VIEWER, "POST", CASES, generic_case_body(), 403, None),
    (Role.TESTER, "POST", CASES, generic_case_body(), 403, None),
    (Role.TESTER, "PATCH", CASES + "/{case}", {"tags": ["x"]}, 403, None),
    (Role.TESTER, "DELETE", CASES + "/{case}", None, 403, None),
    (Role.VIEWER, "POST", SUBMIT, {"test_case_id": "{case}"}, 403, None),
]


def fill(value: Any, ids: dict[str, str]) -> Any:
    text = json.dumps(value)
    for name, ident in ids.items():
        text = text.replace("{" + name + "}", ident)
    return json.loads(text)


@pytest.fixture
def execution_id(queued: Callable[..., uuid.UUID], case: TestCase) -> str:
    return str(queued(case))


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "status", "field"),
    BAD_REQUESTS,
    ids=[f"{m} {p.split('/api/v1/')[-1]} {s} {f or r.value}" for r, m, p, _, s, f in BAD_REQUESTS],
)
def test_bad_request_gets_a_problem_naming_the_field(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    case: TestCase,
    execution_id: str,
    unchanged: None,
    role: Role,
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    ids = {"case": str(case.id), "execution": execution_id}
    kwargs = {"json": fill(body, ids)} if body is not None else {}
    response = client.request(method, fill(path, ids), headers=auth(role), **kwargs)
    found = problem(response, status, field)
    if field is not None and status == 422:
        assert field.split(".")[-1] in found["detail"]
    if status == 403:
        assert role.value in found["detail"]


def test_several_errors_are_all_listed(
    client: TestClient, auth: Callable[..., dict[str, str]], unchanged: None
) -> None:
    r = client.post(CASES, json={"kind": "generic", "spec": {}, "extra": 1}, headers=auth(Role.ADMIN))
    found = problem(r, 422)
    fields = {e["field"] for e in found["errors"]}
    assert {"body.name", "body.extra"} <= fields
    assert found["field"] in fields


@pytest.mark.parametrize("raw", [b'{"name": ', b"{'name': 'x'}", b'{"name": "x",}', b"\xff\xfe"])
def test_malformed_json_is_a_422_problem(
    client: TestClient, auth: Callable[..., dict[str, str]], unchanged: None, raw: bytes
) -> None:
    headers = {**auth(Role.ADMIN), "Content-Type": "application/json"}
    found = problem(client.post(CASES, content=raw, headers=headers), 422)
    assert found["field"].startswith("body")
    assert "JSON" in found["detail"] or "json" in found["errors"][0]["type"]


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON followed by spaces up to exactly ``size`` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_413(
    client: TestClient, auth: Callable[..., dict[str, str]], unchanged: None, declared: bool
) -> None:
    limit = get_settings().max_body_bytes
    assert limit == 1024 * 1024
    raw = padded(generic_case_body(), limit + 1)
    headers = {**auth(Role.ADMIN), "Content-Type": "application/json"}
    response = client.post(CASES, content=raw if declared else chunks(raw), headers=headers)
    sent = response.request.headers
    assert ("content-length" in sent) is declared and (
        sent.get("transfer-encoding") == "chunked"
    ) is not declared
    found = problem(response, 413, field="body")
    assert str(limit) in found["detail"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_accepted(
    client: TestClient, auth: Callable[..., dict[str, str]], declared: bool
) -> None:
    raw = padded(generic_case_body(name=f"big-{declared}"), get_settings().max_body_bytes)
    headers = {**auth(Role.ADMIN), "Content-Type": "application/json"}
    response = client.post(CASES, content=raw if declared else chunks(raw), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == f"big-{declared}"


# --- authentication --------------------------------------------------------------------------------

PROTECTED = [
    ("GET", CASES),
    ("POST", CASES),
    ("GET", "/api/v1/executions"),
    ("POST", SUBMIT),
    ("GET", f"/api/v1/executions/{RANDOM_ID}"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_a_401_with_www_authenticate(
    client: TestClient, unchanged: None, method: str, path: str
) -> None:
    response = client.request(method, path, json={} if method == "POST" else None)
    found = problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in found["detail"]


def forged(user_id: uuid.UUID, *, key: str | None = None, expired: bool = False) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(seconds=-60 if expired else 600)}
    return jwt.encode(claims, key or get_settings().secret_key, algorithm="HS256")


def test_bad_tokens_are_401(client: TestClient, session: Session, unchanged: None) -> None:
    user, good = make_user(session, Role.ADMIN)
    tokens = {
        "garbage": "not-a-jwt",
        "wrong key": forged(user.id, key="another-secret-key-that-is-long-enough"),
        "expired": forged(user.id, expired=True),
        "unknown user": forged(uuid.uuid4()),
        "no subject": jwt.encode(
            {"exp": datetime.now(UTC) + timedelta(minutes=5)}, get_settings().secret_key, algorithm="HS256"
        ),
        "truncated": good[:-5],
    }
    for why, token in tokens.items():
        response = client.get(CASES, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, why
        problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get(CASES, headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_a_disabled_users_token_stops_working(client: TestClient, session: Session) -> None:
    user, token = make_user(session, Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(CASES, headers=headers).status_code == 200
    with session.begin():
        session.execute(update(User).where(User.id == user.id).values(is_active=False))
    problem(client.get(CASES, headers=headers), 401)


def test_roles_that_may_act_do(
    client: TestClient, auth: Callable[..., dict[str, str]], case: TestCase
) -> None:
    """The 403s above are about the role, not the request: the same requests by the right role work."""
    assert client.post(CASES, json=generic_case_body(), headers=auth(Role.MAINTAINER)).status_code == 201
    assert (
        client.post(SUBMIT, json={"test_case_id": str(case.id)}, headers=auth(Role.TESTER)).status_code == 201
    )
    assert client.get("/api/v1/executions", headers=auth(Role.VIEWER)).status_code == 200
