"""The only writer of ``executions.status``.

Each change is a conditional UPDATE (the row must be in an allowed source status, and when an
attempt is given, still at that attempt) plus an append-only transition row and its live event,
in the caller's transaction. A refused change raises InvalidTransition (HTTP 409).

On PostgreSQL the three are one statement (data-modifying CTEs): every test's claim and result
go through here, and each round trip costs both processes CPU on a busy host. SQLite, which has
no writable CTEs, runs them one after another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Alias, Integer, Table, bindparam, case, func, insert, literal, select, true, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from anvil.domain.states import ALLOWED, FINISHED, Status, sources_of
from anvil.errors import InvalidTransition, NotFound
from db import changes, events, observed
from db.events import EVENTS, EXECUTIONS
from db.models import Execution, ExecutionTransition
from db.sql import built_once, clock, clock_params
from db.types import utcnow

TRANSITIONS = cast(Table, ExecutionTransition.__table__)
INSERT_TRANSITION = insert(TRANSITIONS).returning(TRANSITIONS.c.id)
# What the metrics count of each change (db/observed.py), read back by the UPDATE itself.
_c = EXECUTIONS.c
OBSERVED = (
    _c.case_snapshot["kind"].as_string().label("observed_kind"),
    _c.trigger_kind.label("observed_trigger_kind"),
    _c.priority.label("observed_priority"),
    _c.queued_at.label("observed_queued_at"),
    _c.started_at.label("observed_started_at"),
    _c.finished_at.label("observed_finished_at"),
)


@dataclass(frozen=True)
class Transitioned:
    execution_id: uuid.UUID
    from_status: Status
    to_status: Status
    attempt: int
    root_id: uuid.UUID
    event_seq: int  # the number of this transition's event in its root's stream
    returned: tuple[Any, ...] = ()  # the extra ``returning`` columns


def transition(
    session: Session,
    execution_id: uuid.UUID,
    to: Status,
    *,
    actor: str,
    reason: str | None = None,
    from_: Status | Iterable[Status] | None = None,
    attempt: int | None = None,
    values: dict[str, Any] | None = None,
    where: list[Any] | None = None,
    returning: tuple[Any, ...] = (),
    params: dict[str, Any] | None = None,
    reuse: str | None = None,
    reserve_events: int = 0,
) -> Transitioned:
    """Move one execution to ``to``; raise InvalidTransition when it is not allowed right now.

    The change is noted (db/changes.py) for the commit: committing the session then also schedules
    a retry when ``to`` is FAILED/ERROR/TIMEOUT with retries left, and settles the suite the
    execution belongs to (db/reactions.py, registered on Anvil's sessions in db/session.py).

    ``from_`` narrows the allowed sources; a single source status costs one statement, several
    cost a locking read first (so the transition row can name where it came from).
    ``attempt`` is the fencing token: the change only applies while the row is at that attempt.
    ``values`` are other columns set in the same UPDATE (they may be SQL expressions);
    ``where`` adds conditions the row must also meet; ``returning`` adds columns to read back.
    Columns in ``values``, ``where`` and ``returning`` are table columns (``EXECUTIONS.c``): the
    statements here are Core, not ORM, because they run several times for every execution.

    On the hot path (claim, finish) the UPDATE is built once per process: ``reuse`` names the
    call site, whose ``values`` and ``where`` then hold only bind parameters (given in ``params``)
    and expressions that never change (``db.sql.clock``).

    ``reserve_events`` takes that many event numbers just before the transition's own, for events
    the caller inserts in the same transaction (a test's last steps, listed before its result).
    """
    allowed = sources_of(to)
    if from_ is not None:
        wanted = {from_} if isinstance(from_, Status) else set(from_)
        allowed = allowed & frozenset(wanted)
    if len(allowed) == 1:
        (src,) = allowed
    else:
        current = session.execute(
            select(Execution.status, Execution.attempt).where(Execution.id == execution_id).with_for_update()
        ).one_or_none()
        if current is None:
            raise NotFound(f"execution {execution_id} does not exist")
        src = Status(current.status)
        if src not in allowed:
            raise _refused(execution_id, src, to, attempt, current.attempt)

    dialect = session.get_bind().dialect.name
    fenced = attempt is not None
    one_statement = dialect == "postgresql"

    def build() -> Any:
        stmt = _update(dialect, src, to, fenced=fenced, values=values, where=where, returning=returning)
        return _with_log(stmt, src, to, returning) if one_statement else stmt

    stmt = built_once((reuse, dialect, src, to, fenced), build) if reuse else build()
    at = utcnow()
    bound = {
        "p_id": execution_id,
        "p_attempt": attempt,
        "p_reserve": reserve_events,
        **clock_params(dialect),
        **(params or {}),
    }
    if one_statement:
        bound |= {
            "p_at": at,
            "p_actor": actor,
            "p_reason": reason,
            "p_data": events.transition_data(
                execution_id, src=src.value, to=to.value, actor=actor, reason=reason, at=at
            ),
        }
    # The Core UPDATE bypasses the unit of work: write pending changes first, and make a loaded
    # copy of the row (if any) reload on its next use.
    session.flush()
    row = session.execute(stmt, bound).one_or_none()
    if row is None:
        current = session.execute(
            select(Execution.status, Execution.attempt).where(Execution.id == execution_id)
        ).one_or_none()
        if current is None:
            raise NotFound(f"execution {execution_id} does not exist")
        raise _refused(execution_id, Status(current.status), to, attempt, current.attempt)
    new_attempt, root_id, seq = row[:3]
    kind, trigger_kind, priority, queued_at, started_at, finished_at = row[3 + len(returning) :]
    observed.note_moved(
        session,
        observed.Moved(src, to, kind or "", trigger_kind, priority, queued_at, started_at, finished_at),
    )
    loaded = session.identity_map.get(session.identity_key(Execution, execution_id))
    if loaded is not None:
        session.expire(loaded)
    changes.note_change(session, execution_id, root_id, to, finished=to in FINISHED)
    if one_statement:
        events.note_written(session, root_id)
    else:
        if root_id != execution_id:
            seq = events.next_seq(session, root_id, 1 + reserve_events)
        _log(
            session,
            execution_id,
            root_id,
            seq,
            attempt=new_attempt,
            src=src,
            to=to,
            actor=actor,
            reason=reason,
            at=at,
        )
    return Transitioned(execution_id, src, to, new_attempt, root_id, seq, tuple(row[3 : 3 + len(returning)]))


def _update(
    dialect: str,
    src: Status,
    to: Status,
    *,
    fenced: bool,
    values: dict[str, Any] | None,
    where: list[Any] | None,
    returning: tuple[Any, ...],
) -> Any:
    c = EXECUTIONS.c
    stmt = (
        update(EXECUTIONS)
        .where(c.id == bindparam("p_id"), c.status == src.value)
        .values(status=to.value, event_seq=_bump(c), **(values or {}))
        .returning(c.attempt, c.root_execution_id, c.event_seq, *returning, *OBSERVED)
    )
    if fenced:
        stmt = stmt.where(c.attempt == bindparam("p_attempt"))
    if where:
        stmt = stmt.where(*where)
    if to is Status.QUEUED:
        stmt = stmt.values(queued_at=clock(dialect))
    return stmt


def _taken(counter: Any) -> Any:
    """A root's ``event_seq`` after taking this transition's number and the ``p_reserve`` ones
    before it."""
    return counter + 1 + bindparam("p_reserve", type_=Integer())


def _bump(c: Any) -> Any:
    """SET clause for ``event_seq``: a root numbers its own stream's events; a member's events
    are numbered by its root."""
    return case((c.root_execution_id == c.id, _taken(c.event_seq)), else_=c.event_seq)


def _with_log(moved_stmt: Any, src: Status, to: Status, returning: tuple[Any, ...]) -> Any:
    """PostgreSQL: the status UPDATE, the transition row and its event as one statement.

    A member's event is numbered by bumping its root's counter in the same statement (another
    row, locked after the member's, the order the two-step path uses too). When the UPDATE
    matches nothing, nothing is inserted and no row comes back.
    """
    moved = moved_stmt.returning(EXECUTIONS.c.id).cte("moved")
    root = cast(Alias, EXECUTIONS.alias("root"))
    bumped = (
        update(root)
        .where(root.c.id == moved.c.root_execution_id, moved.c.root_execution_id != moved.c.id)
        .values(event_seq=_taken(root.c.event_seq))
        .returning(root.c.event_seq)
        .cte("bumped")
    )
    seq = func.coalesce(select(bumped.c.event_seq).scalar_subquery(), moved.c.event_seq)
    at = bindparam("p_at", type_=TRANSITIONS.c.at.type)
    logged = (
        insert(TRANSITIONS)
        .from_select(
            ["execution_id", "attempt", "from_status", "to_status", "at", "actor", "reason"],
            select(
                moved.c.id,
                moved.c.attempt,
                literal(src.value),
                literal(to.value),
                at,
                bindparam("p_actor", type_=TRANSITIONS.c.actor.type),
                bindparam("p_reason", type_=TRANSITIONS.c.reason.type),
            ),
        )
        .returning(TRANSITIONS.c.id)
        .cte("logged")
    )
    data = bindparam("p_data", type_=JSONB()).op("||")(
        func.jsonb_build_object("transition_id", logged.c.id, "attempt", moved.c.attempt)
    )
    evented = (
        insert(EVENTS)
        .from_select(
            ["root_execution_id", "seq", "execution_id", "type", "data", "at"],
            select(moved.c.root_execution_id, seq, moved.c.id, literal("transition"), data, at).select_from(
                moved.join(logged, true())  # one row each
            ),
        )
        .cte("evented")
    )
    kept = [moved.c[column.name] for column in (*returning, *OBSERVED)]
    return select(moved.c.attempt, moved.c.root_execution_id, seq, *kept).add_cte(evented)


def _log(
    session: Session,
    execution_id: uuid.UUID,
    root_id: uuid.UUID,
    seq: int | None,
    *,
    attempt: int,
    src: Status | None,
    to: Status,
    actor: str,
    reason: str | None,
    at: datetime | None = None,
) -> None:
    """The append-only transition row and its live event, in the caller's transaction."""
    at = at or utcnow()
    transition_id = session.execute(
        INSERT_TRANSITION,
        {
            "execution_id": execution_id,
            "attempt": attempt,
            "from_status": src.value if src else None,
            "to_status": to.value,
            "at": at,
            "actor": actor,
            "reason": reason,
        },
    ).scalar_one()
    data = events.transition_data(
        execution_id,
        src=src.value if src else None,
        to=to.value,
        actor=actor,
        reason=reason,
        at=at,
        attempt=attempt,
        transition_id=transition_id,
    )
    events.append(session, execution_id=execution_id, root_id=root_id, seq=seq, type_="transition", data=data)


def _refused(
    execution_id: uuid.UUID, src: Status, to: Status, want_attempt: int | None, attempt: int
) -> InvalidTransition:
    if want_attempt is not None and want_attempt != attempt:
        return InvalidTransition(
            f"execution {execution_id} is at attempt {attempt}, not {want_attempt}",
            current_status=src.value,
        )
    if to in ALLOWED[src]:
        return InvalidTransition(
            f"execution {execution_id} is {src.value}; it cannot move to {to.value} from there now",
            current_status=src.value,
        )
    return InvalidTransition(
        f"execution {execution_id} is {src.value}; {src.value} -> {to.value} is not allowed",
        current_status=src.value,
    )
