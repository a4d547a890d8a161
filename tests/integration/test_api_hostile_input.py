"""Hostile input gets a 422 problem naming where it is, never a 500, and writes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from anvil.domain.enums import Role
from anvil.settings import get_settings
from db.models import TestCase
from tests.integration.support import generic_case_body, problem

Headers = dict[str, str]
CASES = "/api/v1/test-cases"
SUBMIT = "/api/v1/executions/case"
SCHEDULES = "/api/v1/schedules"
JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> Any:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... {} }}."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def raw(text: str) -> bytes:
    """JSON text as sent on the wire; a lone surrogate goes as its UTF-8-like bytes (surrogatepass)."""
    return text.encode("utf-8", "surrogatepass")


# (path, JSON text with "{case}" for the case's id, the field the problem names)
HOSTILE_BODIES = [
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": "a\\u0000b"}}', "body.params.x"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": ["ok", "\\ud800"]}}', "body.params.x.1"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": "\\udfff lone low"}}', "body.params.x"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"\\u0000key": 1}}', "body.params.\\u0000key"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": NaN}}', "body"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": -Infinity}}', "body"),
    (SUBMIT, '{"test_case_id": "{case}", "params": {"x": 1e400}}', "body.params.x"),
    (SUBMIT, '{"test_case_id": "{case}", "run_id": "nightly\\u0000"}', "body.run_id"),
    (SUBMIT, '{"test_case_id": "{case}", "expires_in_s": Infinity}', "body"),
    (CASES, '{"name": "a\\u0000", "spec": {"workspace": "demo", "steps": [{"run": ["true"]}]}}', "body.name"),
    (
        CASES,
        '{"name": "n", "spec": {"workspace": "demo", "steps": [{"run": ["echo", "\\ud83d"]}]}}',
        "body.spec.steps.0.run.1",
    ),
    (CASES, '{"name": "n", "description": "\\u0000", "spec": {}}', "body.description"),
    (
        CASES,
        '{"name": "n", "spec": {"workspace": "demo", "steps": [{"run": ["true"]}]}, '
        '"retry_policy": {"backoff_base_s": NaN}}',
        "body",
    ),
    (
        "/api/v1/executions/batch",
        '{"items": [{"test_case_id": "{case}", "params": {"p": "\\u0000"}}]}',
        "body.items.0.params.p",
    ),
    (SCHEDULES, '{"name": "\\ud800", "cron": "0 2 * * *", "test_case_id": "{case}"}', "body.name"),
    ("/api/v1/test-suites", '{"name": "s", "tags": ["\\u0000"]}', "body.tags.0"),
]


@pytest.mark.parametrize(("path", "text", "field"), HOSTILE_BODIES)
def test_nul_lone_surrogates_and_non_finite_numbers_in_bodies_are_422(
    client: TestClient,
    auth: Callable[..., Headers],
    case: TestCase,
    unchanged: None,
    path: str,
    text: str,
    field: str,
) -> None:
    body = raw(text.replace("{case}", str(case.id)))
    response = client.post(path, content=body, headers={**auth(Role.ADMIN), **JSON})
    found = problem(response, 422, field)
    assert found["errors"][0]["field"] == field


def test_a_body_without_a_content_type_is_checked_too(
    client: TestClient, auth: Callable[..., Headers], case: TestCase, unchanged: None
) -> None:
    body = raw(f'{{"test_case_id": "{case.id}", "params": {{"x": "\\u0000"}}}}')
    response = client.post(SUBMIT, content=body, headers=auth(Role.ADMIN))
    problem(response, 422, "body.params.x")


def test_a_cancel_reason_with_nul_is_422(
    client: TestClient, auth: Callable[..., Headers], queued: Callable[..., uuid.UUID]
) -> None:
    execution_id = queued()
    response = client.post(
        f"/api/v1/executions/{execution_id}/cancel",
        content=b'{"reason": "stop\\u0000"}',
        headers={**auth(Role.ADMIN), **JSON},
    )
    problem(response, 422, "body.reason")
    assert (
        client.get(f"/api/v1/executions/{execution_id}", headers=auth(Role.VIEWER)).json()["status"]
        == "QUEUED"
    )


def test_nul_in_a_query_string_or_a_login_form_is_422(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    viewer = auth(Role.VIEWER)
    problem(client.get("/api/v1/executions?run_id=a%00b", headers=viewer), 422, "query.run_id")
    problem(client.get("/api/v1/test-cases?tag=%00", headers=viewer), 422, "query.tag")
    login = client.post("/api/v1/auth/token", data={"username": "admin\x00", "password": "pw"})
    problem(login, 422, "body.username")


@pytest.mark.parametrize("depth", [33, 63, 255, 256, 1000])
def test_params_nested_too_deep_are_422(
    client: TestClient, auth: Callable[..., Headers], case: TestCase, unchanged: None, depth: int
) -> None:
    params = '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)  # json.dumps stops at ~1000 levels
    body = f'{{"test_case_id": "{case.id}", "params": {params}}}'
    response = client.post(SUBMIT, content=body, headers={**auth(Role.TESTER), **JSON})
    found = problem(response, 422)
    assert found["field"].startswith("body.params") or found["field"] == "body", found
    assert "levels" in found["detail"] or "nest" in found["detail"], found


def test_params_up_to_32_levels_and_64_kib_are_accepted_and_served_back(
    client: TestClient, auth: Callable[..., Headers], case: TestCase
) -> None:
    tester = auth(Role.TESTER)
    deep = client.post(SUBMIT, json={"test_case_id": str(case.id), "params": nested(32)}, headers=tester)
    assert deep.status_code == 201, deep.text
    lineage = client.get(f"/api/v1/executions/{deep.json()['id']}/lineage", headers=tester)
    assert lineage.status_code == 200, lineage.text
    assert lineage.json()["execution"]["params"] == nested(32)

    big = {"blob": "x" * (64 * 1024 - 20)}
    accepted = client.post(SUBMIT, json={"test_case_id": str(case.id), "params": big}, headers=tester)
    assert accepted.status_code == 201, accepted.text
    too_big = {"blob": "x" * (64 * 1024)}
    response = client.post(SUBMIT, json={"test_case_id": str(case.id), "params": too_big}, headers=tester)
    assert "64" in problem(response, 422, "body.params")["detail"]


def test_schedule_params_are_limited_too(
    client: TestClient, auth: Callable[..., Headers], case: TestCase, unchanged: None
) -> None:
    body = {"name": "deep", "cron": "0 2 * * *", "test_case_id": str(case.id), "params": nested(40)}
    problem(client.post(SCHEDULES, json=body, headers=auth(Role.ADMIN)), 422, "body.params")


def test_integer_query_and_path_parameters_are_bounded(
    client: TestClient, auth: Callable[..., Headers], queued: Callable[..., uuid.UUID]
) -> None:
    execution_id = queued()
    viewer, tester = auth(Role.VIEWER), auth(Role.TESTER)
    steps = client.get(f"/api/v1/executions/{execution_id}/steps?attempt=2147483648", headers=viewer)
    problem(steps, 422, "query.attempt")
    ok = client.get(f"/api/v1/executions/{execution_id}/steps?attempt=2147483647", headers=viewer)
    assert ok.status_code == 200 and ok.json() == []
    step = client.post(
        f"/api/v1/executions/{execution_id}/steps/2147483648", json={"status": "PASSED"}, headers=tester
    )
    problem(step, 422, "path.seq")


def test_a_last_event_id_of_non_ascii_digits_is_treated_as_absent(
    client: TestClient, auth: Callable[..., Headers], queued: Callable[..., uuid.UUID]
) -> None:
    execution_id = queued()
    admin = auth(Role.ADMIN)
    assert client.post(f"/api/v1/executions/{execution_id}/cancel", json={}, headers=admin).status_code == 200
    url = f"/api/v1/executions/{execution_id}/events"
    with client.stream("GET", url, headers={**auth(Role.VIEWER), "Last-Event-ID": "²".encode()}) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    # From the start: the first event (id 1) is replayed, and the stream ends.
    assert "\nid: 1\n" in "\n" + text or text.startswith("id: 1"), text
    assert "event: end" in text


# ---- strict types --------------------------------------------------------------------------------

STRICT_TYPES = [
    (CASES, generic_case_body(timeout_s=True), "body.timeout_s"),
    (CASES, generic_case_body(timeout_s="30"), "body.timeout_s"),
    (CASES, generic_case_body(timeout_s=30.5), "body.timeout_s"),
    (CASES, generic_case_body(retry_policy={"max_retries": True}), "body.retry_policy.max_retries"),
    (CASES, generic_case_body(retry_policy={"jitter": "0.5"}), "body.retry_policy.jitter"),
    (
        CASES,
        generic_case_body(spec={"workspace": "demo", "steps": [{"run": ["true"], "expect_exit": True}]}),
        "body.spec.steps.0.expect_exit",
    ),
    (
        CASES,
        generic_case_body(spec={"workspace": "demo", "steps": [{"run": ["true"], "timeout_s": "5"}]}),
        "body.spec.steps.0.timeout_s",
    ),
    (SUBMIT, {"test_case_id": "{case}", "expires_in_s": False}, "body.expires_in_s"),
    ("/api/v1/test-suites", {"name": "s", "fail_fast": "yes"}, "body.fail_fast"),
    (SCHEDULES, {"name": "s", "cron": "0 2 * * *", "test_case_id": "{case}", "enabled": 1}, "body.enabled"),
]


@pytest.mark.parametrize(("path", "body", "field"), STRICT_TYPES)
def test_numbers_and_flags_must_have_their_json_type(
    client: TestClient,
    auth: Callable[..., Headers],
    case: TestCase,
    unchanged: None,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    text = json.dumps(body).replace("{case}", str(case.id))
    response = client.post(path, content=text, headers={**auth(Role.ADMIN), **JSON})
    problem(response, 422, field)


def test_a_retry_repair_flag_must_be_a_boolean(
    client: TestClient, auth: Callable[..., Headers], queued: Callable[..., uuid.UUID]
) -> None:
    execution_id = queued()
    response = client.post(f"/api/v1/executions/{execution_id}/retry", json={"repair": 1}, headers=auth())
    problem(response, 422, "body.repair")


NOT_ZONES = ["localtime", "Factory", "posixrules", "posix/UTC", "right/UTC", "../UTC", ""]


@pytest.mark.parametrize("zone", NOT_ZONES)
def test_only_iana_time_zones_are_accepted(
    client: TestClient, auth: Callable[..., Headers], case: TestCase, unchanged: None, zone: str
) -> None:
    body = {"name": "tz", "cron": "0 2 * * *", "timezone": zone, "test_case_id": str(case.id)}
    problem(client.post(SCHEDULES, json=body, headers=auth(Role.ADMIN)), 422, "body.timezone")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_iana_time_zones_are_accepted(
    client: TestClient, auth: Callable[..., Headers], case: TestCase, zone: str
) -> None:
    body = {"name": "tz", "cron": "0 2 * * *", "timezone": zone, "test_case_id": str(case.id)}
    response = client.post(SCHEDULES, json=body, headers=auth(Role.ADMIN))
    assert response.status_code == 201, response.text
    assert response.json()["timezone"] == zone


# ---- workspaces ------------------------------------------------------------------------------------


def test_workspaces_lists_only_directories_inside_the_root(
    client: TestClient, auth: Callable[..., Headers], tmp_path: Path
) -> None:
    from api.app import app

    root = tmp_path / "root"
    (root / "real" / "features").mkdir(parents=True)
    (root / "plain").mkdir()
    (root / "etc-link").symlink_to("/etc")
    (root / "outside").symlink_to(tmp_path)
    (root / "dangling").symlink_to(tmp_path / "missing")
    (root / "file.txt").write_text("not a workspace")
    settings = get_settings().model_copy(update={"workspace_root": root})
    app.dependency_overrides[get_settings] = lambda: settings
    try:
        response = client.get("/api/v1/workspaces", headers=auth(Role.VIEWER))
    finally:
        app.dependency_overrides.pop(get_settings)
    assert response.status_code == 200, response.text
    assert [(w["name"], w["kinds"]) for w in response.json()["items"]] == [("plain", []), ("real", ["bdd"])]
