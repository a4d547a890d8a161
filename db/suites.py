"""Test suites: members given as case ids and/or tags; CRUD and member resolution."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from anvil.errors import InvalidInput, NotFound
from db.cases import tag_filter
from db.models import TestCase, TestSuite
from db.names import ensure_name_free, flush_unique
from db.pagination import page
from db.types import utcnow


def create_suite(session: Session, *, created_by: uuid.UUID | None, **fields: Any) -> TestSuite:
    ensure_name_free(session, TestSuite, fields["name"], what="test suite")
    check_members(session, fields.get("case_ids", []), fields.get("tags", []))
    suite = TestSuite(id=uuid.uuid4(), created_by=created_by, **fields)
    session.add(suite)
    flush_unique(session, suite.name, what="test suite")
    return suite


def get_suite(session: Session, suite_id: uuid.UUID, *, field: str = "id") -> TestSuite:
    suite = session.get(TestSuite, suite_id)
    if suite is None or suite.deleted_at is not None:
        raise NotFound(f"test suite {suite_id} does not exist", field=field)
    return suite


def update_suite(session: Session, suite: TestSuite, changes: dict[str, Any]) -> TestSuite:
    if "name" in changes and changes["name"] != suite.name:
        ensure_name_free(session, TestSuite, changes["name"], what="test suite")
    if "case_ids" in changes or "tags" in changes:
        check_members(session, changes.get("case_ids", suite.case_ids), changes.get("tags", suite.tags))
    for key, value in changes.items():
        setattr(suite, key, value)
    suite.version += 1
    suite.updated_at = utcnow()
    flush_unique(session, suite.name, what="test suite")
    return suite


def delete_suite(session: Session, suite: TestSuite) -> None:
    suite.deleted_at = utcnow()
    session.flush()


def list_suites(session: Session, *, limit: int, cursor: str | None) -> tuple[list[TestSuite], str | None]:
    stmt = select(TestSuite).where(TestSuite.deleted_at.is_(None))
    return page(
        session, stmt, created_at=TestSuite.created_at, ident=TestSuite.id, limit=limit, cursor=cursor
    )


def check_members(session: Session, case_ids: list[str], tags: list[str]) -> None:
    if not case_ids and not tags:
        raise InvalidInput("a suite needs members: give case_ids, tags, or both", field="body.case_ids")
    wanted = {uuid.UUID(str(c)) for c in case_ids}
    found = set(
        session.scalars(select(TestCase.id).where(TestCase.id.in_(wanted), TestCase.deleted_at.is_(None)))
    )
    missing = sorted(str(c) for c in wanted - found)
    if missing:
        raise InvalidInput(f"unknown test case id(s): {', '.join(missing)}", field="body.case_ids")


def resolve_members(session: Session, suite: TestSuite) -> list[TestCase]:
    """The live cases the suite runs now: its listed cases first (in order), then tagged ones by name."""
    listed = [uuid.UUID(str(c)) for c in suite.case_ids]
    clauses = []
    if listed:
        clauses.append(TestCase.id.in_(listed))
    clauses += [tag_filter(TestCase.tags, tag, session) for tag in suite.tags]
    cases = session.scalars(
        select(TestCase).where(TestCase.deleted_at.is_(None), or_(*clauses)).order_by(TestCase.name)
    ).all()
    position = {case_id: i for i, case_id in enumerate(listed)}
    return sorted(cases, key=lambda c: (position.get(c.id, len(position)), c.name))
