"""The catalogue as people browse it: live cases and suites by name (a search, one page at a time,
keyset on the name, which is unique among live rows), and the latest runs of one suite."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Execution, TestCase, TestSuite

Named = TypeVar("Named", TestCase, TestSuite)


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def by_name(
    session: Session,
    model: type[Named],
    *,
    search: str = "",
    after: str | None = None,
    limit: int,
    kind: str | None = None,
) -> tuple[list[Named], str | None]:
    """Live rows whose name contains ``search`` (any case), by name, after the name ``after``.

    Returns the page and the name to continue after (None on the last page). ``kind`` filters cases.
    """
    stmt = select(model).where(model.deleted_at.is_(None))
    if search:
        stmt = stmt.where(model.name.ilike(_like(search), escape="\\"))
    if after:
        stmt = stmt.where(model.name > after)
    if kind and model is TestCase:
        stmt = stmt.where(TestCase.kind == kind)
    rows = list(session.scalars(stmt.order_by(model.name).limit(limit + 1)))
    return rows[:limit], rows[limit - 1].name if len(rows) > limit else None


def suite_runs(session: Session, suite_id: uuid.UUID, *, limit: int) -> list[Execution]:
    """The suite's own executions (not its members'), newest first."""
    return list(
        session.scalars(
            select(Execution)
            .where(Execution.test_suite_id == suite_id, Execution.test_case_id.is_(None))
            .order_by(Execution.created_at.desc(), Execution.id.desc())
            .limit(limit)
        )
    )
