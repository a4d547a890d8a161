"""Results run elsewhere: ``POST /api/v1/results/junit`` imports a JUnit XML report as one finished
execution (trigger_kind ``ci``) of a case, with its steps and per-test results."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Response, UploadFile
from pydantic import ConfigDict, Field, StringConstraints
from sqlalchemy.exc import IntegrityError

from anvil.domain.junit_import import read_report
from anvil.errors import InvalidInput
from api.deps import SessionDep, SettingsDep, Tester
from api.execution_schemas import ExecutionPublic, RunId, SourceFields
from db import imports
from db.executions import find_idempotent
from db.scopes import find_case
from db.types import utcnow

router = APIRouter(prefix="/api/v1/results", tags=["results"])
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


class JunitImportFields(SourceFields):
    """The form fields sent with the report (the form also holds the file: other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    case: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="the test case the results belong to: its id or exact name"
    )
    run_id: RunId | None = None


@router.post("/junit", status_code=201, response_model=ExecutionPublic)
def import_junit(
    fields: Annotated[JunitImportFields, Form()],
    file: Annotated[UploadFile, File(description="the JUnit XML report")],
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ExecutionPublic:
    """Import a JUnit XML report (pytest, Maven surefire, Gradle, jest-junit, go-junit-report) run
    elsewhere as one finished execution of the case, trigger_kind ``ci``: one step and one test
    result per testcase, so history, statistics and flaky detection cover it.

    A report that is empty, not well-formed XML (the problem names the line and column), not JUnit,
    larger than ANVIL_IMPORT_MAX_BYTES or with a DTD is refused (422) and nothing is written. With an
    Idempotency-Key, a repeated upload (a CI step retried) returns the first execution.
    """
    data = file.file.read(settings.import_max_bytes + 1)
    if len(data) > settings.import_max_bytes:
        raise InvalidInput(f"the report is larger than {settings.import_max_bytes} bytes", field="file")
    digest = hashlib.sha256(fields.model_dump_json().encode() + b"\0" + data).hexdigest()
    if idempotency_key:
        earlier = find_idempotent(session, requested_by=user.id, key=idempotency_key, request_hash=digest)
        if earlier is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return ExecutionPublic.from_row(earlier)
    case = find_case(session, fields.case, field="body.case", live=True)
    now = utcnow()
    report = read_report(data, pytest_ids=case.kind == "pytest", output_cap=settings.step_output_cap, now=now)
    try:
        execution = imports.import_report(
            session,
            case=case,
            report=report,
            requested_by=user.id,
            actor=f"import:{user.username}",
            source=fields.source(),
            run_id=fields.run_id,
            max_attempts=settings.max_attempts,
            now=now,
            origin={"format": "junit", "file": (file.filename or "")[:200], "suites": report.suites[:20]},
            idempotency=(idempotency_key, digest) if idempotency_key else None,
        )
        session.commit()
    except IntegrityError:
        # The same key raced us to the insert: answer with the winner's execution.
        session.rollback()
        if not idempotency_key:
            raise
        winner = find_idempotent(session, requested_by=user.id, key=idempotency_key, request_hash=digest)
        if winner is None:
            raise
        response.headers["Idempotent-Replayed"] = "true"
        return ExecutionPublic.from_row(winner)
    response.headers["Location"] = f"/api/v1/executions/{execution.id}"
    return ExecutionPublic.from_row(execution)
