"""The retention duty: delete executions and step output past ``retention_days``, and per-test
results past ``results_retention_days`` (anvil/domain/retention.py says what and when), and the
worker registry's rows of workers stopped or stale for a week (db/workers.py).

Run by the tick (scheduler/tick.py) on the beat holding the tick lease, at most once a minute (the
``retention`` row of scheduler_leases says when the next round is due, whichever beat runs it).
Unlike the other duties it is not one transaction: every batch of at most ``retention_batch`` rows
is its own short transaction, so no lock is held for long and a busy table is never blocked. A
round stops after ROUND_BUDGET_S and the next tick goes on where it stopped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.orm import Session

from anvil.domain.retention import ROUND_BUDGET_S, cutoffs, next_round_at
from anvil.settings import Settings
from db import retention, workers
from db.session import new_session
from db.sql import read_db_now

log = logging.getLogger("anvil.retention")


@dataclass
class RetentionReport:
    """What one round deleted: rows per table, and how many transactions (batches) it took."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    finished: bool = True  # False: the time budget ran out with more to delete

    def add(self, what: str, count: int) -> None:
        self.deleted[what] = self.deleted.get(what, 0) + count


def run_retention(
    settings: Settings, *, holder: str, force: bool = False, budget_s: float = ROUND_BUDGET_S
) -> RetentionReport | None:
    """One round if one is due (or ``force``); None when none was due."""
    with new_session() as session, session.begin():
        now = read_db_now(session)
        due = retention.take_round(session, holder=holder, now=now, next_at=next_round_at(now, finished=True))
    if not (due or force):
        return None
    limits = cutoffs(
        now, retention_days=settings.retention_days, results_retention_days=settings.results_retention_days
    )
    report = RetentionReport()
    deadline = time.monotonic() + budget_s
    batch = settings.retention_batch

    def step(what: str, work: Callable[[Session], int], *, more: Callable[[int], bool]) -> bool:
        """One batch in its own transaction; True while there may be more of it."""
        if time.monotonic() > deadline:
            report.finished = False
            return False
        with new_session() as session, session.begin():
            count = work(session)
        report.batches += 1
        report.add(what, count)
        return more(count)

    def full(count: int) -> bool:
        return count >= batch

    def trees(roots: list[uuid.UUID]) -> None:
        """The rows of these trees, children first."""
        for what, table in retention.DEPENDENTS:
            while step(
                what, partial(retention.delete_dependents, table=table, roots=roots, limit=batch), more=full
            ):
                pass
        # Fewer than a batch may go while more remain (a parent waits for its children): until none.
        while step("executions", partial(retention.delete_executions, roots=roots, limit=batch), more=bool):
            pass

    attempted: set[uuid.UUID] = set()
    while report.finished:
        with new_session() as session:
            roots = retention.expired_roots(session, cutoff=limits.executions, limit=batch)
        if not roots:
            break
        if attempted.issuperset(roots):
            log.warning(
                "retention could not delete every execution of the trees %s", ", ".join(map(str, roots))
            )
            break
        attempted.update(roots)
        trees(roots)
    results = partial(retention.delete_old_results, cutoff=limits.results, limit=batch)
    while step("test_results", results, more=full):
        pass
    rollups = partial(retention.delete_old_rollups, cutoff=limits.results, limit=batch)
    while step("result_rollups", rollups, more=full):
        pass
    tests = partial(retention.delete_forgotten_tests, cutoff=limits.results, limit=batch)
    while step("tests", tests, more=full):
        pass
    deliveries = partial(retention.delete_old_deliveries, cutoff=limits.executions, limit=batch)
    while step("webhook_deliveries", deliveries, more=full):
        pass
    # Workers stopped or stale for a week (anvil/domain/workers.py: FORGET_AFTER_DAYS).
    gone_workers = partial(workers.forget_old, now=now, limit=batch)
    while step("workers", gone_workers, more=full):
        pass
    if not report.finished:
        with new_session() as session, session.begin():
            retention.set_next_round(session, at=next_round_at(now, finished=False))
    if any(report.deleted.values()):
        log.info(
            "retention deleted %s in %d batches%s",
            ", ".join(f"{count} {what}" for what, count in report.deleted.items() if count),
            report.batches,
            "" if report.finished else " (more next tick)",
        )
    return report
