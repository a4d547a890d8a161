"""Login throttling: consecutive failed logins per key (a username, a client address) with an
exponential lockout.

The counters live in the database, not in Redis: every API process (and every host) sees them,
a failure and its lockout are one transaction, they survive a broker restart, and standalone mode
(SQLite, perhaps no Redis at all with the filesystem broker) has the very same code path. The cost
is one small write per failed login and one DELETE per successful one (its username's row), next
to the argon2 check that dominates a login anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.models import LoginThrottle


@dataclass(frozen=True)
class Policy:
    """After ``threshold`` failures in a row, locked for ``base_s`` doubling per further failure,
    at most ``max_s``; a failure more than ``window_s`` after the previous one starts again at 1."""

    threshold: int
    base_s: float
    max_s: float
    window_s: float

    def lockout_s(self, failures: int) -> float | None:
        if failures < self.threshold:
            return None
        exponent = min(failures - self.threshold, 40)  # 2**40 s is past any max_s
        return min(self.max_s, self.base_s * 2**exponent)


def locked_for(session: Session, *, keys: Sequence[str], now: datetime) -> float | None:
    """Seconds until the longest lockout among ``keys`` ends, or None when none is locked."""
    until = session.scalar(
        select(LoginThrottle.locked_until)
        .where(LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now)
        .order_by(LoginThrottle.locked_until.desc())
        .limit(1)
    )
    return (until - now).total_seconds() if until is not None else None


def record_failure(session: Session, *, key: str, policy: Policy, now: datetime) -> tuple[int, float | None]:
    """Count one failed login for ``key``; (failures in a row, lockout seconds it caused or None)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(LoginThrottle)
        .values(key=key, failures=0, last_failure_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key == key)
        .with_for_update()  # concurrent failures of one key count one after the other
        .execution_options(populate_existing=True)
    ).one()
    if row.last_failure_at < now - timedelta(seconds=policy.window_s):
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    lockout = policy.lockout_s(row.failures)
    if lockout is not None:
        row.locked_until = now + timedelta(seconds=lockout)
    session.flush()
    return row.failures, lockout


def clear(session: Session, *, key: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
