"""Keyset pagination on (created_at, id), newest first, with opaque cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from anvil.errors import InvalidInput


class _Keyed(Protocol):
    created_at: datetime
    id: uuid.UUID


T = TypeVar("T", bound=_Keyed)


def encode_cursor(row: _Keyed) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, ident = raw.split("|", 1)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:  # every cursor we issue carries its zone; a naive one was made up
            raise ValueError("cursor timestamp without a time zone")
        return at, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this API returned", field="query.cursor") from exc


def page(
    session: Session,
    stmt: Select[Any],
    *,
    created_at: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """Run ``stmt`` for one page after ``cursor``; returns the rows and the next cursor (or None)."""
    if cursor:
        created, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_at < created, and_(created_at == created, ident < last_id)))
    rows = list(session.scalars(stmt.order_by(created_at.desc(), ident.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
