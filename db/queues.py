"""What waits and what runs, read from PostgreSQL (the source of truth, whatever Redis holds): the
depth of each priority's queue, the executions in the live statuses, and the slots each worker
process has busy. Each is one grouped query on the ``(status, …)`` indexes of ``executions``, so
it stays cheap however many finished executions the table holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority
from anvil.domain.states import Status
from db.models import Execution


@dataclass(frozen=True)
class QueueDepth:
    """The QUEUED executions of one priority at ``now``: how many, and how long the oldest waits."""

    priority: Priority
    waiting: int
    oldest_queued_at: datetime | None
    oldest_wait_s: float | None

    @property
    def queue(self) -> str:
        return self.priority.queue


def queue_depths(session: Session, now: datetime) -> list[QueueDepth]:
    """Every priority, highest first (0 waiting included), judged at ``now`` (``read_db_now``)."""
    rows = session.execute(
        select(Execution.priority, func.count(), func.min(Execution.queued_at))
        .where(Execution.status == Status.QUEUED.value)
        .group_by(Execution.priority)
    ).all()
    found = {priority: (count, oldest) for priority, count, oldest in rows}
    depths = []
    for priority in Priority:
        count, oldest = found.get(priority.value, (0, None))
        # Clocks of other hosts may put queued_at a moment after now: never a negative wait.
        wait = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        depths.append(QueueDepth(priority, count, oldest, wait))
    return depths


def status_counts(session: Session, statuses: Iterable[Status]) -> dict[Status, int]:
    """How many executions are in each of ``statuses`` (0 included)."""
    wanted = list(statuses)
    rows = session.execute(
        select(Execution.status, func.count())
        .where(Execution.status.in_([s.value for s in wanted]))
        .group_by(Execution.status)
    ).all()
    found = {status: count for status, count in rows}
    return {s: found.get(s.value, 0) for s in wanted}


def busy_slots(session: Session) -> Counter[str]:
    """Worker name -> its RUNNING executions (the slots it has busy).

    An execution records ``<worker name>/<pool process id>`` (workers/execute.py), so the name is
    what precedes the last slash. A PAUSED manual test holds no slot: its worker let it go.
    """
    rows = session.execute(
        select(Execution.worker, func.count())
        .where(Execution.status == Status.RUNNING.value, Execution.worker.is_not(None))
        .group_by(Execution.worker)
    ).all()
    busy: Counter[str] = Counter()
    for process, count in rows:
        busy[process.rsplit("/", 1)[0]] += count
    return busy
