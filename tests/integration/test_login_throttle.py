"""db/throttle.py on PostgreSQL and on SQLite (standalone mode), and its lockout policy by table."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from db import throttle
from db.types import utcnow

POLICY = throttle.Policy(threshold=3, base_s=2, max_s=30, window_s=600)


@pytest.mark.parametrize(
    ("failures", "lockout"),
    [(1, None), (2, None), (3, 2), (4, 4), (5, 8), (6, 16), (7, 30), (100, 30), (10**6, 30)],
)
def test_the_lockout_starts_at_the_threshold_doubles_and_is_capped(
    failures: int, lockout: float | None
) -> None:
    assert POLICY.lockout_s(failures) == lockout


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest) -> Session:
    return request.getfixturevalue("session" if request.param == "postgresql" else "sqlite_session")


def test_failures_lock_then_a_clear_unlocks(db: Session) -> None:
    now = utcnow()
    keys = ["user:tess", "addr:192.0.2.1"]
    for expected in (1, 2):
        with db.begin():
            assert throttle.record_failure(db, key="user:tess", policy=POLICY, now=now) == (expected, None)
    with db.begin():
        assert throttle.locked_for(db, keys=keys, now=now) is None
        assert throttle.record_failure(db, key="user:tess", policy=POLICY, now=now) == (3, 2)
    with db.begin():
        assert throttle.locked_for(db, keys=keys, now=now + timedelta(seconds=0.5)) == 1.5
        assert throttle.locked_for(db, keys=["user:other", "addr:192.0.2.1"], now=now) is None
        assert throttle.locked_for(db, keys=keys, now=now + timedelta(seconds=2)) is None
        assert (
            throttle.record_failure(db, key="user:tess", policy=POLICY, now=now + timedelta(seconds=3))[1]
            == 4
        )
    with db.begin():
        throttle.clear(db, key="user:tess")
    with db.begin():
        assert throttle.locked_for(db, keys=keys, now=now + timedelta(seconds=3)) is None
        assert throttle.record_failure(db, key="user:tess", policy=POLICY, now=now) == (1, None)


def test_failures_further_apart_than_the_window_start_again(db: Session) -> None:
    now = utcnow()
    with db.begin():
        throttle.record_failure(db, key="addr:192.0.2.9", policy=POLICY, now=now)
        throttle.record_failure(db, key="addr:192.0.2.9", policy=POLICY, now=now)
    later = now + timedelta(seconds=POLICY.window_s + 1)
    with db.begin():
        assert throttle.record_failure(db, key="addr:192.0.2.9", policy=POLICY, now=later) == (1, None)
