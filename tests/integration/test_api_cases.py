"""Test-case CRUD over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from anvil.domain.enums import Role
from anvil.settings import get_settings
from tests.integration.support import count_rows, generic_case_body, problem

CASES = "/api/v1/test-cases"
Auth = Callable[..., dict[str, str]]


@pytest.fixture
def maintainer(auth: Auth) -> dict[str, str]:
    return auth(Role.MAINTAINER)


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post(CASES, json=generic_case_body(**body), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_stores_the_normalised_spec_and_defaults(
    client: TestClient, maintainer: dict[str, str]
) -> None:
    made = create(client, maintainer, name="login works", tags=["smoke", "api"], description="checks login")
    assert made["version"] == 1
    assert made["kind"] == "generic" and made["tags"] == ["smoke", "api"]
    assert made["timeout_s"] == get_settings().default_test_timeout_s
    assert made["spec"] == {"workspace": "demo", "steps": [{"run": ["true"], "expect_exit": 0, "env": {}}]}
    shown = client.get(f"{CASES}/{made['id']}", headers=maintainer)
    assert shown.status_code == 200
    assert shown.json() == made


def test_name_is_trimmed_and_must_be_unique(client: TestClient, maintainer: dict[str, str]) -> None:
    made = create(client, maintainer, name="  smoke  ")
    assert made["name"] == "smoke"
    before = count_rows()
    found = problem(client.post(CASES, json=generic_case_body(name="smoke"), headers=maintainer), 409)
    assert found["field"].split(".")[-1] == "name"
    assert "smoke" in found["detail"]
    assert count_rows() == before


def test_list_filters_by_tag_and_kind(client: TestClient, maintainer: dict[str, str], auth: Auth) -> None:
    smoke = create(client, maintainer, tags=["smoke"])
    both = create(client, maintainer, tags=["smoke", "nightly"])
    nightly = create(client, maintainer, tags=["nightly"])
    manual = client.post(
        CASES,
        json={"name": "look at it", "kind": "manual", "spec": {"steps": [{"action": "open the page"}]}},
        headers=maintainer,
    )
    assert manual.status_code == 201, manual.text
    viewer = auth(Role.VIEWER)

    def names(**params: Any) -> set[str]:
        r = client.get(CASES, params=params, headers=viewer)
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        return {item["id"] for item in r.json()["items"]}

    assert names() == {smoke["id"], both["id"], nightly["id"], manual.json()["id"]}
    assert names(tag="smoke") == {smoke["id"], both["id"]}
    assert names(tag="nightly") == {both["id"], nightly["id"]}
    assert names(tag="smok") == set()
    assert names(kind="generic") == {smoke["id"], both["id"], nightly["id"]}
    assert names(kind="manual") == {manual.json()["id"]}
    assert names(kind="generic", tag="nightly") == {both["id"], nightly["id"]}


def test_list_pages(client: TestClient, maintainer: dict[str, str]) -> None:
    made = [create(client, maintainer)["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(CASES, params=params, headers=maintainer).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


def test_patch_bumps_the_version_and_revalidates_the_spec(
    client: TestClient, maintainer: dict[str, str]
) -> None:
    made = create(client, maintainer, tags=["a"])
    url = f"{CASES}/{made['id']}"

    r = client.patch(url, json={"tags": ["b"], "timeout_s": 30}, headers=maintainer)
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["tags"], r.json()["timeout_s"]) == (2, ["b"], 30)
    assert r.json()["updated_at"] >= made["updated_at"]

    new_spec = {
        "workspace": "other",
        "steps": [{"name": "echo", "run": ["echo", "hi"], "expect_output": "hi"}],
    }
    r = client.patch(url, json={"spec": new_spec}, headers=maintainer)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 3
    assert r.json()["spec"]["steps"][0] == {
        "name": "echo",
        "run": ["echo", "hi"],
        "expect_exit": 0,
        "expect_output": "hi",
        "env": {},
    }

    for bad, field in [
        ({"spec": {"workspace": "other", "steps": [{"run": []}]}}, "body.spec.steps.0.run"),
        ({"spec": {"workspace": "/etc", "steps": [{"run": ["x"]}]}}, "body.spec.workspace"),
        ({"spec": {"workspace": "w", "steps": [{"run": ["x"], "env": {"ANVIL_SECRET_KEY": "x"}}]}}, None),
        ({"name": None}, "body.name"),
        ({"spec": None}, "body.spec"),
        ({"timeout_s": get_settings().max_test_timeout_s + 1}, "body.timeout_s"),
        ({"kind": "manual"}, "body.kind"),  # the kind of a case is fixed
    ]:
        problem(client.patch(url, json=bad, headers=maintainer), 422, field)
    shown = client.get(url, headers=maintainer).json()
    assert shown["version"] == 3 and shown["spec"]["workspace"] == "other"


def test_rename_onto_a_taken_name_is_a_conflict(client: TestClient, maintainer: dict[str, str]) -> None:
    create(client, maintainer, name="first")
    second = create(client, maintainer, name="second")
    problem(client.patch(f"{CASES}/{second['id']}", json={"name": "first"}, headers=maintainer), 409)
    shown = client.get(f"{CASES}/{second['id']}", headers=maintainer).json()
    assert (shown["name"], shown["version"]) == ("second", 1)
    # Renaming to its own name is no conflict.
    assert (
        client.patch(f"{CASES}/{second['id']}", json={"name": "second"}, headers=maintainer).status_code
        == 200
    )


def test_delete_is_soft_and_keeps_past_executions_readable(
    client: TestClient, maintainer: dict[str, str], auth: Auth
) -> None:
    made = create(client, maintainer, name="doomed")
    tester = auth(Role.TESTER)
    ran = client.post("/api/v1/executions/case", json={"test_case_id": made["id"]}, headers=tester)
    assert ran.status_code == 201

    assert client.delete(f"{CASES}/{made['id']}", headers=maintainer).status_code == 204
    problem(client.get(f"{CASES}/{made['id']}", headers=maintainer), 404, "id")
    problem(client.delete(f"{CASES}/{made['id']}", headers=maintainer), 404, "id")
    assert made["id"] not in {c["id"] for c in client.get(CASES, headers=maintainer).json()["items"]}
    problem(
        client.post("/api/v1/executions/case", json={"test_case_id": made["id"]}, headers=tester),
        404,
        "body.test_case_id",
    )

    execution = client.get(f"/api/v1/executions/{ran.json()['id']}", headers=auth(Role.VIEWER))
    assert execution.status_code == 200
    assert execution.json()["test_case_id"] == made["id"]
    assert execution.json()["test_case_name"] == "doomed"

    # The name is free again.
    assert create(client, maintainer, name="doomed")["id"] != made["id"]


def test_a_pytest_run_in_the_old_generic_form_is_stored_as_kind_pytest(
    client: TestClient, maintainer: dict[str, str]
) -> None:
    """Clients written before pytest became a kind of its own keep working."""
    old = {"workspace": "pytest-demo", "pytest": {"args": ["-m", "smoke"]}}
    r = client.post(CASES, json=generic_case_body(spec=old), headers=maintainer)
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["spec"]) == (
        "pytest",
        {"workspace": "pytest-demo", "args": ["-m", "smoke"]},
    )
    # A generic case given such a spec later becomes a pytest case; a steps spec stays generic.
    steps = generic_case_body()
    made = client.post(CASES, json=steps, headers=maintainer).json()
    r = client.patch(f"{CASES}/{made['id']}", json={"spec": old}, headers=maintainer)
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["spec"]["args"]) == ("pytest", ["-m", "smoke"])
    assert r.json()["version"] == 2
