from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from anvil.domain.gates import GateRules
from anvil.errors import InvalidInput
from api.deps import Maintainer, SessionDep, SettingsDep, Viewer
from api.schemas import Page, TestSuiteCreate, TestSuitePublic, TestSuiteUpdate
from db import schedules, suites

router = APIRouter(prefix="/api/v1/test-suites", tags=["test suites"])

# PATCH may clear the description, but not these.
NOT_NULL = ("name", "case_ids", "tags", "fail_fast", "default_priority")


def _stored(changes: dict[str, Any]) -> dict[str, Any]:
    """Body fields as the row stores them: case ids as strings (duplicates dropped), enums as values."""
    stored = dict(changes)
    if "case_ids" in stored:
        stored["case_ids"] = [str(c) for c in dict.fromkeys(stored["case_ids"])]
    if "default_priority" in stored:
        stored["default_priority"] = stored["default_priority"].value
    if stored.get("retry_policy") is not None:  # only the keys set: the rest come from the case
        stored["retry_policy"] = {k: v for k, v in stored["retry_policy"].items() if v is not None}
    if stored.get("gate") is not None:  # only the rules checked
        stored["gate"] = GateRules.model_validate(stored["gate"]).as_dict()
    return stored


@router.post("", status_code=201, response_model=TestSuitePublic)
def create_test_suite(
    body: TestSuiteCreate, user: Maintainer, session: SessionDep, response: Response
) -> object:
    """Define a suite (maintainer or admin): listed cases and/or every live case with one of the tags."""
    suite = suites.create_suite(session, created_by=user.id, **_stored(body.model_dump()))
    session.commit()
    response.headers["Location"] = f"/api/v1/test-suites/{suite.id}"
    return suite


@router.get("", response_model=Page[TestSuitePublic])
def list_test_suites(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    """Suites newest first; follow next_cursor for older ones."""
    items, next_cursor = suites.list_suites(session, limit=min(limit, settings.page_limit_max), cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{suite_id}", response_model=TestSuitePublic)
def get_test_suite(suite_id: uuid.UUID, _: Viewer, session: SessionDep) -> object:
    return suites.get_suite(session, suite_id)


@router.patch("/{suite_id}", response_model=TestSuitePublic)
def update_test_suite(
    suite_id: uuid.UUID, body: TestSuiteUpdate, _: Maintainer, session: SessionDep
) -> object:
    """Change a suite; its version goes up. Suite executions already submitted keep their members."""
    suite = suites.get_suite(session, suite_id)
    changes = body.model_dump(exclude_unset=True)
    for required in NOT_NULL:
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=f"body.{required}")
    suites.update_suite(session, suite, _stored(changes))
    session.commit()
    return suite


@router.delete("/{suite_id}", status_code=204)
def delete_test_suite(suite_id: uuid.UUID, user: Maintainer, session: SessionDep) -> Response:
    """Remove a suite from the catalogue; its past executions stay readable.

    Schedules that start it are disabled in the same transaction, with a ``disabled_reason``.
    """
    suite = suites.get_suite(session, suite_id)
    suites.delete_suite(session, suite)
    schedules.disable_for_deleted_target(session, suite, actor=user.username)
    session.commit()
    return Response(status_code=204)
