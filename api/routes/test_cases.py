"""Test cases: maintainers define them; everyone reads them, with ``env`` values masked below maintainer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from anvil.domain.enums import Role
from anvil.domain.runners import CaseKind, upgrade_legacy, validate_spec
from anvil.errors import InvalidInput
from anvil.settings import Settings
from api.deps import Maintainer, SessionDep, SettingsDep, Viewer
from api.schemas import Page, TestCaseCreate, TestCasePublic, TestCaseUpdate
from db import cases, schedules
from db.models import TestCase, User
from db.secrets import check_references

router = APIRouter(prefix="/api/v1/test-cases", tags=["test cases"])

MASK = "***"
MASKED_HELP = (
    "Readers below the maintainer role (viewers, testers) see the values of every ``env`` in the spec "
    f'as "{MASK}"; references to test secrets (``{{"secret": "name"}}``) are shown as they are.'
)


def mask_env(value: Any) -> Any:
    """``value`` (a spec) with the plain values of every ``env`` mapping replaced by ``***``.

    Secret references (objects such as ``{"secret": "name"}``) hold no value and stay as they are.
    """
    if isinstance(value, list):
        return [mask_env(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "env" and isinstance(item, dict):
            out[key] = {name: MASK if isinstance(v, str) else v for name, v in item.items()}
        else:
            out[key] = mask_env(item)
    return out


def public(case: TestCase, user: User) -> TestCasePublic:
    shown = TestCasePublic.model_validate(case)
    if Role(user.role).level < Role.MAINTAINER.level:
        shown.spec = mask_env(shown.spec)
    return shown


def _timeout(settings: Settings, value: int | None) -> int:
    if value is None:
        return settings.default_test_timeout_s
    if value > settings.max_test_timeout_s:
        raise InvalidInput(
            f"timeout_s may be at most {settings.max_test_timeout_s} on this server", field="body.timeout_s"
        )
    return value


@router.post("", status_code=201, response_model=TestCasePublic)
def create_test_case(
    body: TestCaseCreate, user: Maintainer, session: SessionDep, settings: SettingsDep
) -> object:
    """Define a test case (maintainer or admin). Secrets its env names must exist (/api/v1/secrets)."""
    kind, spec = upgrade_legacy(body.kind.value, body.spec)
    spec = validate_spec(kind, spec)
    check_references(session, spec)
    case = cases.create_case(
        session,
        name=body.name,
        kind=kind,
        spec=spec,
        tags=body.tags,
        timeout_s=_timeout(settings, body.timeout_s),
        description=body.description,
        created_by=user.id,
        retry_policy=body.retry_policy.layer() if body.retry_policy else None,
        file_map=body.file_map,
    )
    session.commit()
    return case


@router.get(
    "",
    response_model=Page[TestCasePublic],
    description=f"Live test cases newest first; follow next_cursor for older ones. {MASKED_HELP}",
)
def list_test_cases(
    user: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    kind: CaseKind | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    items, next_cursor = cases.list_cases(
        session,
        limit=min(limit, settings.page_limit_max),
        cursor=cursor,
        kind=kind.value if kind else None,
        tag=tag,
    )
    return {"items": [public(case, user) for case in items], "next_cursor": next_cursor}


@router.get("/{case_id}", response_model=TestCasePublic, description=MASKED_HELP)
def get_test_case(case_id: uuid.UUID, user: Viewer, session: SessionDep) -> object:
    return public(cases.get_case(session, case_id), user)


@router.patch("/{case_id}", response_model=TestCasePublic)
def update_test_case(
    case_id: uuid.UUID, body: TestCaseUpdate, _: Maintainer, session: SessionDep, settings: SettingsDep
) -> object:
    """Change a case; its version goes up. Executions already submitted keep the version they ran."""
    case = cases.get_case(session, case_id)
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "spec", "tags"):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=f"body.{required}")
    if "spec" in changes:
        kind, spec = upgrade_legacy(case.kind, changes["spec"])
        if kind != case.kind:  # a generic case given an old-style pytest spec becomes a pytest case
            changes["kind"] = kind
        changes["spec"] = validate_spec(kind, spec)
        check_references(session, changes["spec"])
    if "timeout_s" in changes:
        changes["timeout_s"] = _timeout(settings, changes["timeout_s"])
    if "retry_policy" in changes:  # null clears it: server defaults (under any suite's policy)
        changes["retry_policy"] = body.retry_policy.layer() if body.retry_policy else None
    cases.update_case(session, case, changes)
    session.commit()
    return case


@router.delete("/{case_id}", status_code=204)
def delete_test_case(case_id: uuid.UUID, user: Maintainer, session: SessionDep) -> Response:
    """Remove a case from the catalogue; its past executions stay readable.

    Schedules that start it are disabled in the same transaction, with a ``disabled_reason``
    (GET /api/v1/schedules). Its executions are not retried any more (a retry is a 409).
    """
    case = cases.get_case(session, case_id)
    cases.delete_case(session, case)
    schedules.disable_for_deleted_target(session, case, actor=user.username)
    session.commit()
    return Response(status_code=204)
