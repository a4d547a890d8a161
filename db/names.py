"""Unique live names for soft-deleted catalogue rows (test cases, suites)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.errors import Conflict


def ensure_name_free(session: Session, model: Any, name: str, *, what: str) -> None:
    taken = session.scalar(select(model.id).where(model.name == name, model.deleted_at.is_(None)))
    if taken is not None:
        raise Conflict(f"a {what} named {name!r} already exists ({taken})", field="body.name")


def flush_unique(session: Session, name: str, *, what: str) -> None:
    """Flush; a concurrent writer that took the name between check and insert becomes a 409."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a {what} named {name!r} already exists", field="body.name") from exc
