"""Tests and their history: the tests listing (filters, keyset pages by name), one test, and a
test's results newest first (keyset pages on (recorded_at, id))."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from anvil.errors import InvalidInput, NotFound
from db.models import Test, TestResult

T = TypeVar("T")


def get_test(session: Session, test_id: uuid.UUID, *, lock: bool = False) -> Test:
    """One test, read afresh (``lock``: and locked, for a change of its quarantine)."""
    stmt = select(Test).where(Test.id == test_id).execution_options(populate_existing=True)
    test = session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
    if test is None:
        raise NotFound(f"test {test_id} does not exist", field="path.test_id")
    return test


def list_tests(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    case_ids: Sequence[uuid.UUID] | None = None,
    kind: str | None = None,
    last_status: str | None = None,
    search: str | None = None,
    quarantined: bool | None = None,
    only: Collection[uuid.UUID] | None = None,
    excluding: Collection[uuid.UUID] | None = None,
    now: datetime,
) -> tuple[list[Test], str | None]:
    """Tests by name (then id), ``limit`` per page after ``cursor``; every filter optional.

    ``search`` matches a part of the name or key, any case. ``quarantined`` compares expiries with
    ``now``. ``only``/``excluding``: test ids to keep or drop (the flaky filter's answer).
    """
    stmt = select(Test)
    if case_ids is not None:
        stmt = stmt.where(Test.test_case_id.in_(case_ids))
    if kind:
        stmt = stmt.where(Test.kind == kind)
    if last_status:
        stmt = stmt.where(Test.last_status == last_status)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Test.name.ilike(pattern, escape="\\"), Test.key.ilike(pattern, escape="\\")))
    if quarantined is not None:
        held = and_(
            Test.quarantined_at.is_not(None),
            or_(Test.quarantine_expires_at.is_(None), Test.quarantine_expires_at > now),
        )
        stmt = stmt.where(held if quarantined else ~held)
    if only is not None:
        stmt = stmt.where(Test.id.in_(list(only)))
    if excluding:
        stmt = stmt.where(Test.id.not_in(list(excluding)))
    if cursor:
        name, last_id = _decode(cursor)
        after = _parse(uuid.UUID, last_id)
        stmt = stmt.where(or_(Test.name > name, and_(Test.name == name, Test.id > after)))
    rows = list(session.scalars(stmt.order_by(Test.name, Test.id).limit(limit + 1)))
    following = _encode(rows[limit - 1].name, str(rows[limit - 1].id)) if len(rows) > limit else None
    return rows[:limit], following


def test_history(
    session: Session, test_id: uuid.UUID, *, limit: int, cursor: str | None = None
) -> tuple[list[TestResult], str | None]:
    """The test's results newest first, ``limit`` per page after ``cursor``."""
    r = TestResult
    stmt = select(r).where(r.test_id == test_id)
    if cursor:
        at, last_id = _decode(cursor)
        when, ident = _parse(datetime.fromisoformat, at), _parse(int, last_id)
        if when.tzinfo is None:  # every cursor we issue carries its zone
            raise InvalidInput("cursor is not one this API returned", field="query.cursor")
        stmt = stmt.where(or_(r.recorded_at < when, and_(r.recorded_at == when, r.id < ident)))
    rows = list(session.scalars(stmt.order_by(r.recorded_at.desc(), r.id.desc()).limit(limit + 1)))
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], _encode(last.recorded_at.isoformat(), str(last.id)) if last else None


def recent_results(
    session: Session, test_ids: Sequence[uuid.UUID], n: int
) -> dict[uuid.UUID, list[TestResult]]:
    """The last ``n`` results of each test, newest first (one ranked read for a page of tests)."""
    if not test_ids or n < 1:
        return {}
    r = TestResult
    rank = (
        func.row_number()
        .over(partition_by=r.test_id, order_by=(r.recorded_at.desc(), r.id.desc()))
        .label("rank")
    )
    ranked = select(r.id, rank).where(r.test_id.in_(test_ids)).subquery()
    stmt = (
        select(r)
        .join(ranked, ranked.c.id == r.id)
        .where(ranked.c.rank <= n)
        .order_by(r.test_id, r.recorded_at.desc(), r.id.desc())
    )
    found: dict[uuid.UUID, list[TestResult]] = defaultdict(list)
    for result in session.scalars(stmt):
        found[result.test_id].append(result)
    return found


def _encode(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


def _parse(kind: Callable[[str], T], value: str) -> T:
    try:
        return kind(value)
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="query.cursor") from exc


def _decode(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        first, second = raw.split("\x1f", 1)
        if not second:
            raise ValueError("empty")
        return first, second
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this API returned", field="query.cursor") from exc
