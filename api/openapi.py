"""The OpenAPI document, completed with what FastAPI does not derive from the routes.

Every operation declares the problem responses (RFC 9457, ``application/problem+json``) it can
give: 422 always (any query string is checked, see api/input_guard.py), 401/403 when it needs a
token, 404 when its path names a resource, 400/413 when it takes a body, 409 when it changes
something, 429 on the login, 503 when the database is unreachable. A 405 (a method the path does
not have) carries ``Allow`` with the path's methods; it is described once in
``components.responses`` because OpenAPI has no operation to attach it to. Cursor parameters get
their format, and request bodies with an "exactly one of" rule say so in the schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from api.problems import PROBLEM

CHANGES = {"post", "put", "patch", "delete"}
REF = "#/components/schemas/Problem"
# Body fields that name an existing resource by its id or its name (a JUnit import's case).
NAMED_BY_ID_OR_NAME = frozenset({"case"})
CURSOR_HELP = (
    "where the page starts: the next_cursor of the previous page, passed back unchanged (an opaque "
    "URL-safe base64 string without padding); leave out for the first page"
)
RETRY_AFTER = {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}
# status -> (description, headers)
PROBLEMS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("the body could not be read (not UTF-8, or not parseable)", {}),
    401: (
        "no bearer token, or one that is invalid, expired or revoked (at login: wrong credentials)",
        {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    ),
    403: ("the token's role may not do this", {}),
    404: ("the resource named in the path does not exist", {}),
    405: (
        "the path does not support this method",
        {"Allow": {"description": "the methods the path supports", "schema": {"type": "string"}}},
    ),
    409: ("the request conflicts with the resource's current state", {}),
    413: ("the request body is larger than the server accepts", {}),
    422: ("invalid input: the problem's field says where (e.g. body.params.x, query.limit)", {}),
    429: ("too many attempts: try again after Retry-After seconds", {"Retry-After": RETRY_AFTER}),
    503: ("the database cannot be reached right now", {"Retry-After": RETRY_AFTER}),
}
# Body schemas with an "exactly one of" rule: the properties of which exactly one must be non-null.
EXACTLY_ONE = {
    "ScheduleCreate": ("test_case_id", "test_suite_id"),
}


class FieldError(BaseModel):
    field: str = Field(description="where: body.<path>, query.<name>, path.<name> or header.<name>")
    message: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details; members beyond these may appear (e.g. retry_after_s)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="always about:blank: the status says what kind of problem it is")
    title: str
    status: int
    detail: str = Field(description="what went wrong, for people")
    instance: str | None = Field(default=None, description="the request's path")
    field: str | None = Field(default=None, description="the first offending input, as in errors")
    errors: list[FieldError] | None = Field(default=None, description="every invalid input (422)")


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}), Problem=problem)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["responses"] = {"MethodNotAllowed": _response(405)}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _declare(path, method, operation, schemas)
    for name, keys in EXACTLY_ONE.items():
        if name in schemas:
            _exactly_one(schemas[name], keys)


def _declare(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    statuses = {422, 503}
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path or _names_a_resource(operation, schemas):
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {400, 413}
    if method in CHANGES:
        statuses.add(409)
    if path.endswith(("/auth/token", "/auth/password")):
        statuses |= {401, 429}  # wrong credentials; too many wrong attempts
    for status in statuses:
        responses[str(status)] = _response(status)
    operation["responses"] = dict(sorted(responses.items()))
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "cursor" and parameter.get("in") == "query":
            parameter["description"] = CURSOR_HELP


def _names_a_resource(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """The body names an existing resource by id (a case to run, a parent execution, ...)."""
    content = operation.get("requestBody", {}).get("content", {})
    seen: set[str] = set()
    pending = [media.get("schema", {}) for media in content.values()]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending += node
        elif isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref and ref not in seen:
                seen.add(ref)
                pending.append(schemas.get(ref.rsplit("/", 1)[-1], {}))
            properties = node.get("properties", {})
            if any(key.endswith("_id") and "'uuid'" in str(value) for key, value in properties.items()):
                return True
            if any(key in NAMED_BY_ID_OR_NAME for key in properties):
                return True
            pending += [v for k, v in node.items() if k in ("properties", "items", "anyOf", "allOf")]
            pending += list(node.get("properties", {}).values())
    return False


def _response(status: int) -> dict[str, Any]:
    description, headers = PROBLEMS[status]
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": REF}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _exactly_one(schema: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Exactly one of ``keys`` is present with a non-null value (a null one counts as absent)."""
    schema["oneOf"] = [
        {
            "required": [key],
            "properties": {key: {"not": {"type": "null"}}},
        }
        for key in keys
    ]
    schema["description"] = (schema.get("description", "") + f" Exactly one of {', '.join(keys)}.").strip()
