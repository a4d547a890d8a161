"""The API's bound on each database answer (db/session.py ``bound_answers``, ANVIL_DB_ANSWER_TIMEOUT_S).

A stopped PostgreSQL answers nothing and its statement_timeout cannot fire; the API must give up on
its own. Here a slow statement stands in for the silent server (tests/faults/test_service_pauses.py
stops a real one): the wait ends at the bound, the connection is discarded, the next one works.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc, text

from db.session import bound_answers, make_engine


def test_a_silent_database_ends_the_wait_at_the_bound(pg_url: str) -> None:
    engine = make_engine(pg_url)
    bound_answers(engine, 0.5)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        began = time.monotonic()
        with pytest.raises(exc.OperationalError) as raised, engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - began < 3
        # Disconnected: the API answers 503 (api/problems.py) and the pool drops the connection.
        assert raised.value.connection_invalidated
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()
