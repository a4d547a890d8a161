"""The forms of the case and suite pages (api/ui/catalog.py): edit a case (maintainers), submit a
case or a suite (testers and up).

Each goes through the API's own handler — ``PATCH /api/v1/test-cases/{id}``'s, ``POST
/api/v1/executions/case``'s and ``…/suite``'s — with the body the API would take, so validation,
permissions and the one insert path are the API's. A form the API refuses comes back with the
problem above it (422, or 409 for a conflict) and nothing is written; a success answers 303: to
the case's page, or to the new execution's.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from anvil.domain.enums import Role, TriggerKind
from anvil.errors import Conflict, InvalidInput
from api.deps import SessionDep, SettingsDep
from api.execution_schemas import CaseExecutionCreate, SuiteExecutionCreate
from api.routes.executions.submit import submit_case, submit_suite
from api.routes.test_cases import update_test_case
from api.schemas import TestCaseUpdate
from api.ui.catalog import FormState, case_page, find_case, find_suite, suite_page
from api.ui.pages import PageRoute
from api.ui.session import FormUser

router = APIRouter(route_class=PageRoute)

Field = Annotated[str, Form()]
# What a value must look like, for the fields whose API check is a regular expression.
HINTS = {
    "revision": "a commit SHA or tag: letters, digits and . _ / - only, at most 64 characters",
    "branch": "a git branch name: no spaces, control characters or any of ~ ^ : ? * [ \\",
    "environment": "a label of at most 100 characters, without control characters",
    "tags": "tags are letters, digits and . _ : - only, at most 64 characters each",
}
REFUSED = (InvalidInput, Conflict)  # shown above the form; NotFound and Forbidden are error pages


class FormProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc) or "form"
        hint = HINTS.get(loc[0]) if loc and error["type"] == "string_pattern_mismatch" else None
        out.append(f"{where}: {hint or error['msg']}")
    return out


def _refused(exc: InvalidInput | Conflict) -> list[str]:
    return [exc.detail.removeprefix("body.")]


def _json(text: str, name: str, problems: list[str]) -> Any:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})")
        return None
    except RecursionError:
        problems.append(f"{name}: nested too deeply")
        return None
    if not isinstance(value, dict):
        problems.append(f"{name}: give a JSON object, {{…}}")
        return None
    return value


# ---- edit a case ------------------------------------------------------------------------------------


def update_body(values: dict[str, str]) -> TestCaseUpdate:
    """The PATCH body the edit form means; FormProblems saying what is wrong otherwise."""
    problems: list[str] = []
    spec = _json(values["spec"], "spec", problems)
    if spec is None and not problems:
        problems.append("spec: give the case's definition as a JSON object")
    retry_policy = _json(values["retry_policy"], "retry_policy", problems)
    timeout: int | None = None
    if values["timeout_s"].strip():
        try:
            timeout = int(values["timeout_s"])
        except ValueError:
            problems.append("timeout_s: give a whole number of seconds, or nothing for the server default")
    if problems:
        raise FormProblems(problems)
    data = {
        "name": values["name"],
        "description": values["description"].strip() or None,
        "tags": [tag for tag in re.split(r"[,\s]+", values["tags"]) if tag],
        "timeout_s": timeout,
        "spec": spec,
        "retry_policy": retry_policy,
    }
    try:
        return TestCaseUpdate.model_validate(data)
    except ValidationError as exc:
        raise FormProblems(_problems(exc)) from None


@router.post("/cases/{case_id}/edit")
def edit_case(
    request: Request,
    case_id: str,
    viewer: FormUser,
    session: SessionDep,
    settings: SettingsDep,
    name: Field = "",
    description: Field = "",
    tags: Field = "",
    timeout_s: Field = "",
    spec: Field = "",
    retry_policy: Field = "",
    version: Field = "",
) -> Response:
    viewer.need(Role.MAINTAINER)
    case = find_case(session, case_id)
    values = {
        "name": name, "description": description, "tags": tags, "timeout_s": timeout_s,
        "spec": spec, "retry_policy": retry_policy, "version": version,
    }  # fmt: skip
    status = 422
    try:
        body = update_body(values)
        if version != str(case.version):
            status = 409
            values["version"] = str(case.version)  # saving again replaces what the other person saved
            raise FormProblems(
                [
                    f"someone changed this case since you opened the form (now version {case.version}); "
                    "your edits are below: save again to replace their change, or reload to see it"
                ]
            )
        update_test_case(case.id, body, viewer.user, session, settings)
    except FormProblems as exc:
        problems = exc.problems
    except REFUSED as exc:
        session.rollback()  # the handler may have changed the case before the database refused it
        status, problems = exc.status_code, _refused(exc)
    else:
        return RedirectResponse(f"/ui/cases/{case.id}?saved={case.version}", status_code=303)
    return case_page(request, viewer, session, case, status_code=status, edit=FormState(values, problems))


# ---- submit a run ------------------------------------------------------------------------------------


def _run_fields(values: dict[str, str]) -> dict[str, Any]:
    """What both submissions take from the form: a person submitted it, with these options."""
    data: dict[str, Any] = {"trigger_kind": TriggerKind.MANUAL.value}
    for key in ("priority", "revision", "branch", "environment"):
        if values[key].strip():
            data[key] = values[key].strip()
    return data


def _shards(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdecimal() else text


def _submitted(session: Session, create: Callable[[], uuid.UUID]) -> tuple[uuid.UUID | None, int, list[str]]:
    """Run ``create()``: the new execution's id, or the status and problems to show with the form."""
    try:
        return create(), 201, []
    except ValidationError as exc:
        return None, 422, _problems(exc)
    except REFUSED as exc:
        session.rollback()
        return None, exc.status_code, _refused(exc)


@router.post("/cases/{case_id}/submit")
def submit_case_form(
    request: Request,
    case_id: str,
    viewer: FormUser,
    session: SessionDep,
    settings: SettingsDep,
    priority: Field = "",
    revision: Field = "",
    branch: Field = "",
    environment: Field = "",
    shards: Field = "",
) -> Response:
    viewer.need(Role.TESTER)
    case = find_case(session, case_id)
    values = {"priority": priority, "revision": revision, "branch": branch, "environment": environment,
              "shards": shards}  # fmt: skip

    def create() -> uuid.UUID:
        data = {"test_case_id": str(case.id), **_run_fields(values)}
        if shards.strip():
            data["shards"] = _shards(shards)
        body = CaseExecutionCreate.model_validate(data)
        return submit_case(body, viewer.user, session, settings, Response()).id

    created, status, problems = _submitted(session, create)
    if created is not None:
        return RedirectResponse(f"/ui/executions/{created}", status_code=303)
    return case_page(request, viewer, session, case, status_code=status, submit=FormState(values, problems))


@router.post("/suites/{suite_id}/submit")
def submit_suite_form(
    request: Request,
    suite_id: str,
    viewer: FormUser,
    session: SessionDep,
    settings: SettingsDep,
    priority: Field = "",
    revision: Field = "",
    branch: Field = "",
    environment: Field = "",
) -> Response:
    viewer.need(Role.TESTER)
    suite = find_suite(session, suite_id)
    values = {"priority": priority, "revision": revision, "branch": branch, "environment": environment,
              "shards": ""}  # fmt: skip

    def create() -> uuid.UUID:
        body = SuiteExecutionCreate.model_validate({"test_suite_id": str(suite.id), **_run_fields(values)})
        return submit_suite(body, viewer.user, session, settings, Response()).id

    created, status, problems = _submitted(session, create)
    if created is not None:
        return RedirectResponse(f"/ui/executions/{created}", status_code=303)
    return suite_page(request, viewer, session, suite, status_code=status, submit=FormState(values, problems))
