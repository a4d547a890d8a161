"""Which test results statistics and flaky detection read: a scope (cases, a suite's members, the
cases carrying a tag, a branch) and a window (a span before ``now``, or the last N runs)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from anvil.domain.windows import Window
from anvil.errors import NotFound
from db.cases import tag_filter
from db.models import TestCase, TestResult, TestSuite
from db.suites import resolve_members


@dataclass(frozen=True)
class Scope:
    """``case_ids`` None: every case. ``branch``: only results of submissions on that branch."""

    case_ids: tuple[uuid.UUID, ...] | None = None
    branch: str | None = None

    def filters(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.case_ids is not None:
            found.append(TestResult.test_case_id.in_(self.case_ids))
        if self.branch is not None:
            found.append(TestResult.branch == self.branch)
        return found


def resolve_scope(
    session: Session,
    *,
    cases: Sequence[str] = (),
    suites: Sequence[str] = (),
    tag: str | None = None,
    branch: str | None = None,
) -> Scope:
    """Cases and suites (names or ids) add up; a tag keeps the cases carrying it (alone: all of
    them). Unknown case or suite -> NotFound naming the parameter."""
    ids: dict[uuid.UUID, None] = {}
    for ident in cases:
        ids[find_case(session, ident).id] = None
    for ident in suites:
        for case in resolve_members(session, find_suite(session, ident)):
            ids[case.id] = None
    case_ids: tuple[uuid.UUID, ...] | None = tuple(ids) if cases or suites else None
    if tag is not None:
        tagged = select(TestCase.id).where(tag_filter(TestCase.tags, tag, session))
        if case_ids is not None:
            tagged = tagged.where(TestCase.id.in_(case_ids))
        case_ids = tuple(session.scalars(tagged))
    return Scope(case_ids, branch)


def find_case(session: Session, ident: str, *, field: str = "query.case", live: bool = False) -> TestCase:
    """A case by id or by name, a live one first (a deleted one too: its history stays; ``live``:
    only a case that is not deleted, e.g. to import results into)."""
    case = _by_id(session, TestCase, ident)
    if case is None:
        case = session.scalars(
            select(TestCase).where(TestCase.name == ident).order_by(TestCase.deleted_at.is_not(None))
        ).first()
    if case is None or (live and case.deleted_at is not None):
        raise NotFound(f"no test case with id or name {ident!r}", field=field)
    return case


def find_suite(session: Session, ident: str, *, field: str = "query.suite") -> TestSuite:
    suite = _by_id(session, TestSuite, ident)
    if suite is None:
        suite = session.scalars(
            select(TestSuite).where(TestSuite.name == ident, TestSuite.deleted_at.is_(None))
        ).first()
    if suite is None or suite.deleted_at is not None:
        raise NotFound(f"no test suite with id or name {ident!r}", field=field)
    return suite


def _by_id(session: Session, model: Any, ident: str) -> Any:
    try:
        return session.get(model, uuid.UUID(ident))
    except ValueError:
        return None


def result_filters(
    session: Session, scope: Scope, window: Window, now: datetime
) -> tuple[list[ColumnElement[bool]], datetime | None]:
    """The WHERE clauses of the results in ``scope`` and ``window``, and the window's start (None:
    a window of runs with no result in scope)."""
    found = scope.filters()
    start = window.since(now) if window.runs is None else last_runs_start(session, scope, window.runs)
    if start is not None:
        found.append(TestResult.recorded_at >= start)
    return found, start


def last_runs_start(session: Session, scope: Scope, runs: int) -> datetime | None:
    """When the earliest of the last ``runs`` runs in scope was recorded (None: no results).

    Every result of an execution is recorded at its finish, so a run is a distinct ``recorded_at``.
    The last runs of the scope are among the last ``runs`` of each of its cases: those are walked
    back on the (test_case_id, recorded_at) index one probe at a time (a loose index scan), never
    reading the runs' rows, and the earliest of the newest ``runs`` of them is the start.
    """
    at, case_id = TestResult.recorded_at, TestResult.test_case_id
    branch = [TestResult.branch == scope.branch] if scope.branch is not None else []
    cases = select(TestCase.id)
    if scope.case_ids is not None:
        cases = cases.where(TestCase.id.in_(scope.case_ids))
    latest = select(func.max(at)).where(case_id == TestCase.id, *branch).scalar_subquery()
    walk = cases.add_columns(latest.label("at"), literal(1).label("n")).cte("walk", recursive=True)
    earlier = select(func.max(at)).where(case_id == walk.c.id, at < walk.c.at, *branch).scalar_subquery()
    walk = walk.union_all(
        select(walk.c.id, earlier, walk.c.n + 1).where(walk.c.at.is_not(None), walk.c.n < runs)
    )
    found = sorted(set(session.scalars(select(walk.c.at).where(walk.c.at.is_not(None)))), reverse=True)
    return found[min(runs, len(found)) - 1] if found else None
