"""Selection on submissions: what a case or a suite would run, what it stores, and the report after.

A case submission keeps its selection on the execution (``Execution.selection``: the rules, the
counts, every selected key and a bounded set of reasons), which its worker reads at the claim. A
suite submission runs only the member cases with something selected, each with its own selection;
the suite execution keeps the rules, the counts and the cases left out. In observation mode
everything runs and the stored selection says what would have run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from anvil.domain.observation import observe
from anvil.domain.selection import Selection
from anvil.errors import InvalidInput, NotFound
from anvil.settings import get_settings
from api.execution_schemas import (
    CaseSelectionPublic,
    SelectionDryRun,
    SelectionIn,
    SelectionPublic,
    SelectionReport,
    TestChoicePublic,
)
from db.cases import get_case
from db.executions import get_execution
from db.models import TestCase, TestSuite
from db.selection import observed, select_cases
from db.suites import get_suite, resolve_members
from db.types import utcnow

FIELD = "body.selection"


def select(
    session: Session,
    body: SelectionIn,
    cases: Sequence[TestCase],
    *,
    branch: str | None,
    suite: TestSuite | None = None,
) -> Selection:
    return select_cases(
        session,
        cases=cases,
        request=body.request(branch),
        settings=get_settings(),
        now=utcnow(),
        suite=suite,
    )


def case_selection(
    session: Session, case: TestCase, body: SelectionIn, *, branch: str | None, field: str = FIELD
) -> dict[str, Any]:
    """What a case execution stores; 422 when the rules select nothing (and it is no observation)."""
    selection = select(session, body, [case], branch=branch)
    (choice,) = selection.cases
    if not choice.selected and not selection.request.observe:
        raise InvalidInput(_nothing(selection, f"test case {case.name!r}"), field=field)
    return choice.stored(selection.request)


def suite_selection(
    session: Session, suite: TestSuite, body: SelectionIn, *, branch: str | None
) -> tuple[list[TestCase], dict[str, Any], dict[uuid.UUID, dict[str, Any]]]:
    """The members to run, what the suite execution stores, and each member's own selection."""
    members = resolve_members(session, suite)
    selection = select(session, body, members, branch=branch, suite=suite)
    request = selection.request
    chosen = [c for c in selection.cases if c.selected or request.observe]
    if not chosen:
        if not members:
            raise InvalidInput(f"suite {suite.name!r} has no live members to run", field="body.test_suite_id")
        raise InvalidInput(_nothing(selection, f"suite {suite.name!r}"), field=FIELD)
    rows = {member.id: member for member in members}
    return (
        [rows[c.case.id] for c in chosen],
        selection.stored(),
        {c.case.id: c.stored(request) for c in chosen},
    )


def _nothing(selection: Selection, what: str) -> str:
    rules = ", ".join(str(r) for r in selection.request.rules)
    counts = selection.counts
    return (
        f"the selection ({rules}) matched nothing in {what} ({counts['total']} known tests); "
        "POST /api/v1/executions/select shows why, or use observe to run everything"
    )


def dry_run(session: Session, body: SelectionDryRun) -> SelectionPublic:
    suite = None
    if body.test_suite_id is not None:
        suite = get_suite(session, body.test_suite_id, field="body.test_suite_id")
        cases = resolve_members(session, suite)
    else:
        assert body.test_case_id is not None
        cases = [get_case(session, body.test_case_id, field="body.test_case_id")]
    selection = select(session, body.selection, cases, branch=body.branch, suite=suite)
    stored = selection.request.stored()
    return SelectionPublic(
        rules=stored["rules"],
        exclude=stored["exclude"],
        observe=stored["observe"],
        changed_files_total=stored["changed_files_total"],
        counts=selection.counts,
        notes=list(selection.notes),
        cases=[
            CaseSelectionPublic(
                test_case_id=c.case.id,
                name=c.case.name,
                selected=c.selected,
                whole=c.whole,
                rule=c.rule,
                reason=c.reason,
                counts={"selected": len(c.selected_keys), "total": len(c.tests)},
                tests=[
                    TestChoicePublic(key=t.key, selected=t.selected, rule=t.rule, reason=t.reason)
                    for t in c.tests
                ],
            )
            for c in selection.cases
        ],
    )


def report(session: Session, execution_id: uuid.UUID) -> SelectionReport:
    """What the recorded selection would have caught and saved, over the execution's results."""
    execution = get_execution(session, execution_id)
    if not execution.selection:
        raise NotFound(f"execution {execution_id} ran without a selection", field="execution_id")
    rows = observed(session, execution)
    return SelectionReport(
        execution_id=execution.id,
        status=execution.status,
        finished=execution.finished_at is not None,
        observe=bool(execution.selection.get("observe")),
        selection=execution.selection,
        report=observe(rows).as_dict(),
    )
