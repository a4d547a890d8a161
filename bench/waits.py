"""What the benchmark waits on: executions reaching PASSED in the database (anything else that
is final stops the run with a pointer to the worker's log)."""

from __future__ import annotations

import time
from collections.abc import Callable

TERMINAL_NOT_PASSED = ("FAILED", "ERROR", "TIMEOUT", "CANCELLED", "SKIPPED", "ABORTED")


def passed(run_id: str, count: int) -> bool:
    from sqlalchemy import text

    from db.session import new_session

    with new_session() as session:
        counts = dict(
            session.execute(
                text("SELECT status, count(*) FROM executions WHERE run_id = :r GROUP BY status"),
                {"r": run_id},
            ).all()
        )
    bad = {s: c for s, c in counts.items() if s in TERMINAL_NOT_PASSED}
    if bad:
        raise RuntimeError(f"executions of {run_id} ended {bad}; see the worker log")
    return counts.get("PASSED", 0) >= count


def status_of(execution_id: str) -> str:
    from sqlalchemy import text

    from db.session import new_session

    with new_session() as session:
        status = session.execute(
            text("SELECT status FROM executions WHERE id = :i"), {"i": execution_id}
        ).scalar()
    if status in TERMINAL_NOT_PASSED:
        raise RuntimeError(f"execution {execution_id} ended {status}; see the worker log")
    return str(status)


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout:.0f}s")
        time.sleep(interval)
