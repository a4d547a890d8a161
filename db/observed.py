"""What a transaction did that the metrics count (anvil/metrics.py), noted in ``session.info`` and
counted only once it is committed: a rolled-back insert or status change is never counted.

insert_executions (db/executions.py) notes the executions it creates, transition()
(db/transitions.py) each status change with what the metrics need of the row (read back by the
same UPDATE, no extra query). ``listen`` registers the hooks on Anvil's sessions (db/session.py):

- after the commit, the notes are counted;
- a rolled-back savepoint drops the notes made inside it, the rest of the transaction stands;
- when the outermost transaction ends, whatever was not committed is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from anvil import metrics
from anvil.domain.enums import TriggerKind
from anvil.domain.states import FINISHED, Status

_NOTES = "anvil_observed"
_MARKS = "anvil_observed_marks"


@dataclass(frozen=True)
class Created:
    kind: str
    status: str
    trigger_kind: str


@dataclass(frozen=True)
class Moved:
    """One status change and the row's figures after it."""

    src: Status
    to: Status
    kind: str
    trigger_kind: str
    priority: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


def note_created(session: Session, created: Iterable[Created]) -> None:
    session.info.setdefault(_NOTES, []).extend(created)


def note_moved(session: Session, moved: Moved) -> None:
    session.info.setdefault(_NOTES, []).append(moved)


def count(session: Session) -> None:
    """after_commit: count what the committed transaction did."""
    for note in session.info.pop(_NOTES, ()):
        if isinstance(note, Created):
            _created(note)
        else:
            _moved(note)


def _created(note: Created) -> None:
    metrics.EXECUTIONS_CREATED.labels(note.kind, note.status, note.trigger_kind).inc()
    if note.status in FINISHED:  # recorded already finished (an imported report)
        metrics.EXECUTIONS_FINISHED.labels(note.kind, note.status, note.trigger_kind).inc()
    if note.trigger_kind == TriggerKind.RETRY.value:
        metrics.RETRIES_SCHEDULED.inc()


def _moved(note: Moved) -> None:
    if note.to is Status.RUNNING and note.src is Status.QUEUED:
        wait = _seconds(note.queued_at, note.started_at)
        if wait is not None:
            metrics.QUEUE_WAIT.labels(note.priority).observe(wait)
    # FAILED -> RETRYING is the same result handed to a retry: counted once, when it finished.
    if note.to in FINISHED and note.src not in FINISHED:
        metrics.EXECUTIONS_FINISHED.labels(note.kind, note.to.value, note.trigger_kind).inc()
        if note.src in (Status.RUNNING, Status.PAUSED):
            ran = _seconds(note.started_at, note.finished_at)
            if ran is not None:
                metrics.RUN_TIME.labels(note.priority).observe(ran)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # Another host's clock may put ``start`` a moment later: never a negative duration.
    return max(0.0, (end - start).total_seconds())


def _savepoint_started(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[transaction] = len(session.info.get(_NOTES, ()))


def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    if previous.nested:  # back to the savepoint: drop what was noted since it began
        mark = session.info.get(_MARKS, {}).pop(previous, None)
        if mark is not None:
            del session.info.get(_NOTES, [])[mark:]


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost: committed notes were counted already
        session.info.pop(_NOTES, None)
        session.info.pop(_MARKS, None)


def listen(factory: sessionmaker[Any]) -> None:
    event.listen(factory, "after_transaction_create", _savepoint_started)
    event.listen(factory, "after_commit", count)
    event.listen(factory, "after_soft_rollback", _rolled_back)
    event.listen(factory, "after_transaction_end", _ended)
