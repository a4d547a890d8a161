"""Selection: the dry run of a submission's rules, and what a selection caught and saved afterwards."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api import selection
from api.deps import SessionDep, Viewer
from api.execution_schemas import SelectionDryRun, SelectionPublic, SelectionReport

router = APIRouter()


@router.post("/select", response_model=SelectionPublic)
def select(body: SelectionDryRun, _: Viewer, session: SessionDep) -> SelectionPublic:
    """Dry run: what a case or suite submission with this ``selection`` would run, creating nothing.

    Every known test of every case in scope is listed with ``selected`` and the rule that selected
    it (or the exclude rule that dropped it, or "matched no rule") and a one-line reason; a case
    runs ``whole`` (as defined, new tests included) when a rule selects the case itself or every
    known test of it. ``notes`` says when a changed path has no mapping (then everything runs).
    """
    return selection.dry_run(session, body)


@router.get("/{execution_id}/selection", response_model=SelectionReport)
def get_selection(execution_id: uuid.UUID, _: Viewer, session: SessionDep) -> SelectionReport:
    """The execution's selection and, over its test results, what it caught and saved.

    For an observation (``"observe"``) it ran everything: ``caught``/``missed`` count the failures
    the rules would have run or not, ``time_saved_s`` the duration of the tests they would have
    left out. For a suite, over its members' results (the last attempt of each test).
    """
    return selection.report(session, execution_id)
