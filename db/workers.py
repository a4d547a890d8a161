"""The worker registry: one row per worker process (its Celery node name), kept fresh by its
heartbeat (workers/registry.py), and the capacity it offers each queue.

Writes stamp the database clock, so hosts with skewed clocks agree; reads take ``now`` (from
``read_db_now``) and judge each row with the pure ``worker_state`` (anvil/domain/workers.py), which
the SQL filters here agree with. Staleness is 3 × ANVIL_WORKER_HEARTBEAT_S, the setting every
process reads. The same code runs on SQLite (standalone mode), where the local clock stands in.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from anvil.domain.enums import QUEUES
from anvil.domain.workers import WorkerProcess, WorkerState, forget_before, live_since, worker_state
from anvil.settings import get_settings
from db.models import Worker
from db.sql import db_now


@dataclass(frozen=True)
class WorkerView:
    """A registered worker and its state at the ``now`` it was read with."""

    id: uuid.UUID
    name: str
    host: str
    pid: int
    slots: int
    queues: list[str]
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    state: WorkerState


def register(session: Session, *, worker: WorkerProcess) -> None:
    """Record ``worker`` as started and live now: its row is created, or taken over when a worker
    of that name ran before (a restart), which clears ``stopped_at``."""
    now = db_now(session)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new = insert(Worker).values(
        id=uuid.uuid4(), **_reported(worker), started_at=now, heartbeat_at=now, stopped_at=None
    )
    session.execute(
        new.on_conflict_do_update(
            index_elements=["name"],
            set_={
                **{column: new.excluded[column] for column in ("host", "pid", "slots", "queues", "version")},
                "started_at": new.excluded.started_at,
                "heartbeat_at": new.excluded.heartbeat_at,
                "stopped_at": None,
            },
        )
    )


def heartbeat(session: Session, *, worker: WorkerProcess) -> bool:
    """Renew ``worker``'s heartbeat (and its slots and queues, which may change while it runs).
    False when its row was gone, stopped, or taken by another process of the same name: then it
    is registered again (retention deleted it, or two workers share a name), and the caller may
    say so."""
    renewed = session.execute(
        update(Worker)
        .where(*_own_row(worker), Worker.stopped_at.is_(None))
        .values(heartbeat_at=db_now(session), slots=worker.slots, queues=list(worker.queues))
        .returning(Worker.id)
    ).first()
    if renewed is not None:
        return True
    register(session, worker=worker)
    return False


def stopped(session: Session, *, worker: WorkerProcess) -> bool:
    """Mark ``worker`` stopped (a graceful shutdown); False when its row is not its own any more."""
    marked = session.execute(
        update(Worker)
        .where(*_own_row(worker), Worker.stopped_at.is_(None))
        .values(stopped_at=db_now(session))
        .returning(Worker.id)
    ).first()
    return marked is not None


def list_workers(session: Session, *, now: datetime, state: WorkerState | None = None) -> list[WorkerView]:
    """The registered workers (those in ``state`` only, if given), by name, judged at ``now``."""
    statement = select(Worker).order_by(Worker.name)
    if state is not None:
        statement = _in_state(statement, state, now=now)
    heartbeat_s = get_settings().worker_heartbeat_s
    return [_view(row, now=now, heartbeat_s=heartbeat_s) for row in session.scalars(statement)]


def live_slots(session: Session, queue: str, *, now: datetime) -> int:
    """The test slots of the workers live at ``now`` that consume ``queue`` (0 when none does):
    how many executions of that queue can run at once right now."""
    return capacity(session, now=now).slots.get(queue, 0)


@dataclass(frozen=True)
class Capacity:
    workers: int  # live at ``now``
    slots: dict[str, int]  # every queue of Anvil's (and any other a live worker consumes) -> slots


def capacity(session: Session, *, now: datetime) -> Capacity:
    """The live workers at ``now``: how many, and the slots they give each queue."""
    slots = dict.fromkeys(QUEUES, 0)
    rows = session.execute(_in_state(select(Worker.slots, Worker.queues), WorkerState.LIVE, now=now)).all()
    for row in rows:
        for queue in set(row.queues):
            slots[queue] = slots.get(queue, 0) + row.slots
    return Capacity(workers=len(rows), slots=slots)


def forget_old(session: Session, *, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` workers, stopped or stale, whose last heartbeat is older than the
    registry keeps them (FORGET_AFTER_DAYS); how many went. A worker that is in fact still running
    registers again at its next heartbeat."""
    old = select(Worker.id).where(Worker.heartbeat_at < forget_before(now)).limit(limit)
    gone = session.execute(delete(Worker).where(Worker.id.in_(old)).returning(Worker.id)).all()
    return len(gone)


def _reported(worker: WorkerProcess) -> dict[str, Any]:
    return {
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "slots": worker.slots,
        "queues": list(worker.queues),
        "version": worker.version,
    }


def _own_row(worker: WorkerProcess) -> Sequence[Any]:
    # Name, host and pid: a restarted worker (same name) owns the row, its predecessor no longer.
    return (Worker.name == worker.name, Worker.host == worker.host, Worker.pid == worker.pid)


def _in_state(statement: Select[Any], state: WorkerState, *, now: datetime) -> Select[Any]:
    """``statement`` narrowed to the workers in ``state`` at ``now`` (as ``worker_state`` judges)."""
    if state is WorkerState.STOPPED:
        return statement.where(Worker.stopped_at.is_not(None))
    since = live_since(now, heartbeat_s=get_settings().worker_heartbeat_s)
    running = statement.where(Worker.stopped_at.is_(None))
    if state is WorkerState.LIVE:
        return running.where(Worker.heartbeat_at >= since)
    return running.where(Worker.heartbeat_at < since)


def _view(row: Worker, *, now: datetime, heartbeat_s: float) -> WorkerView:
    state = worker_state(
        heartbeat_at=row.heartbeat_at, stopped_at=row.stopped_at, now=now, heartbeat_s=heartbeat_s
    )
    return WorkerView(
        id=row.id,
        name=row.name,
        host=row.host,
        pid=row.pid,
        slots=row.slots,
        queues=list(row.queues),
        version=row.version,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        stopped_at=row.stopped_at,
        state=state,
    )
