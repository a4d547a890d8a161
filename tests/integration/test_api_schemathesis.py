"""schemathesis against the real app (ASGI, on the test's PostgreSQL and Redis) with an admin token.

Every operation of the OpenAPI document gets generated requests, valid and invalid, and every
response must pass schemathesis' default checks: no 5xx, only declared status codes, content
types and headers, bodies matching their schemas, invalid requests refused, valid ones accepted.
Bounded: a fixed seed (derandomized) and a few examples per operation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from api.app import app
from tests.helpers import make_case

EXAMPLES = 15
# Rules JSON Schema cannot state (cron syntax, a spec valid for its kind, an opaque cursor, a cap not
# below its base, a referenced case that exists) are answered with a 422 problem naming the field:
# for schema-valid requests, that is an expected answer too. Everything else is schemathesis' default.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"],
            }
        }
    }
)

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def some_data(client: Any, session: Session) -> None:
    """The app on the test's database (the client fixture), with a case for the listings to return."""
    make_case(session)


@pytest.fixture
def admin(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.ADMIN)


# The document is read from the app itself (no database needed for that); requests go to the app
# through ASGI, after the fixtures above pointed it at the test's database.
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_passes_the_default_checks(case: Any, admin: Headers) -> None:
    case.call_and_validate(headers=admin)


# ---- what the document declares --------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
JSON = {"Content-Type": "application/json"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_operation_declares_its_problem_responses(client: Any) -> None:
    document = client.get("/openapi.json").json()
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["properties"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, op in operations(document):
        declared = op["responses"]
        expected = {"422", "503"}
        if op.get("security"):
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected |= {"400", "413"}
        if method in ("post", "patch", "put", "delete"):
            expected.add("409")
        assert expected <= set(declared), (method, path, sorted(declared))
        for status in expected:
            assert declared[status]["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}
    login = document["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"401", "429"} <= set(login) and "Retry-After" in login["429"]["headers"]
    submit = document["paths"]["/api/v1/executions/case"]["post"]["responses"]
    assert "404" in submit, "a submission names a case that may not exist"


def test_405_is_described_and_carries_every_method_of_the_path(
    client: Any, admin: Headers, session: Session
) -> None:
    document = client.get("/openapi.json").json()
    assert "Allow" in document["components"]["responses"]["MethodNotAllowed"]["headers"]
    case_id = make_case(session).id
    # Three routes share the path; Starlette alone names only the first one's method.
    put = client.put(f"/api/v1/test-cases/{case_id}", json={}, headers=admin)
    assert put.status_code == 405 and put.headers["allow"] == "GET, PATCH, DELETE"
    assert put.headers["content-type"].startswith("application/problem+json")
    # /executions/case is its own path (POST only), not an execution id.
    get = client.get("/api/v1/executions/case", headers=admin)
    assert get.status_code == 405 and get.headers["allow"] == "POST", get.text


def test_cursors_and_exactly_one_of_rules_are_documented(client: Any) -> None:
    document = client.get("/openapi.json").json()
    for path, method, op in operations(document):
        for parameter in op.get("parameters", []):
            if parameter["name"] == "cursor":
                assert "next_cursor" in parameter["description"], (method, path)
    schedule = document["components"]["schemas"]["ScheduleCreate"]
    assert [branch["required"] for branch in schedule["oneOf"]] == [["test_case_id"], ["test_suite_id"]]
    assert "Exactly one of test_case_id, test_suite_id" in schedule["description"]
    spec = document["components"]["schemas"]["TestCaseCreate"]["properties"]["spec"]
    assert "pytest - workspace and args" in spec["description"]
    assert "exactly one of feature" in spec["description"]


def test_every_operation_with_a_json_body_refuses_nul_with_a_422(client: Any, admin: Headers) -> None:
    document = client.get("/openapi.json").json()
    with_json = [
        (path, method)
        for path, method, op in operations(document)
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert len(with_json) >= 15
    for path, method in with_json:
        url = re.sub(r"\{[^}]+\}", "8f14e45f-ceea-467f-a0fd-317e60a567a9", path)
        body = b'{"x": "\\u0000"}'
        response = client.request(method.upper(), url, content=body, headers={**admin, **JSON})
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["field"] == "body.x", (method, path)
