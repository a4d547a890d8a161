"""Test cases: definitions made by maintainers. Deleting keeps the row for executions' history."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, func, select, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from anvil.errors import NotFound
from db.models import TestCase
from db.names import ensure_name_free, flush_unique
from db.pagination import page
from db.types import utcnow


def create_case(
    session: Session,
    *,
    name: str,
    kind: str,
    spec: dict[str, Any],
    tags: list[str],
    timeout_s: int,
    description: str | None,
    created_by: uuid.UUID | None,
    retry_policy: dict[str, Any] | None = None,
    file_map: dict[str, Any] | None = None,
) -> TestCase:
    ensure_name_free(session, TestCase, name, what="test case")
    case = TestCase(
        id=uuid.uuid4(),
        name=name,
        kind=kind,
        spec=spec,
        tags=tags,
        timeout_s=timeout_s,
        description=description,
        created_by=created_by,
        retry_policy=retry_policy,
        file_map=file_map,
    )
    session.add(case)
    flush_unique(session, name, what="test case")
    return case


def get_case(session: Session, case_id: uuid.UUID, *, field: str = "id") -> TestCase:
    case = session.get(TestCase, case_id)
    if case is None or case.deleted_at is not None:
        raise NotFound(f"test case {case_id} does not exist", field=field)
    return case


def update_case(session: Session, case: TestCase, changes: dict[str, Any]) -> TestCase:
    if "name" in changes and changes["name"] != case.name:
        ensure_name_free(session, TestCase, changes["name"], what="test case")
    for key, value in changes.items():
        setattr(case, key, value)
    case.version += 1
    case.updated_at = utcnow()
    flush_unique(session, case.name, what="test case")
    return case


def delete_case(session: Session, case: TestCase) -> None:
    case.deleted_at = utcnow()
    session.flush()


def list_cases(
    session: Session, *, limit: int, cursor: str | None, kind: str | None, tag: str | None
) -> tuple[list[TestCase], str | None]:
    stmt = select(TestCase).where(TestCase.deleted_at.is_(None))
    if kind:
        stmt = stmt.where(TestCase.kind == kind)
    if tag:
        stmt = stmt.where(tag_filter(TestCase.tags, tag, session))
    return page(session, stmt, created_at=TestCase.created_at, ident=TestCase.id, limit=limit, cursor=cursor)


def tag_filter(column: Any, tag: str, session: Session) -> Any:
    """``tag`` is one of the JSON list in ``column``: JSONB containment on PostgreSQL, json_each on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(column, JSONB).contains([tag])
    return exists(
        select(1)
        .select_from(func.json_each(column).table_valued("value"))
        .where(text("value = :t"))
        .params(t=tag)
    )
