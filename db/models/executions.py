"""Executions and what they record: transitions, step traces, manual results, the live-event log,
and a sharded run's tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from db.models.base import Base, check_in
from db.types import BigIntPK, JSONType, utcnow


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        CheckConstraint(check_in("status", Status), name="status"),
        CheckConstraint(check_in("priority", Priority), name="priority"),
        CheckConstraint(check_in("trigger_kind", TriggerKind), name="trigger_kind"),
        CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempt_range"),
        UniqueConstraint("requested_by", "idempotency_key", name="uq_executions_idempotency"),
        Index("ix_executions_created", "created_at", "id"),
        Index("ix_executions_status_queued", "status", "queued_at"),
        Index("ix_executions_correlation_id", "correlation_id"),
        Index("ix_executions_parent_execution_id", "parent_execution_id"),
        Index("ix_executions_trigger_kind", "trigger_kind"),
        Index("ix_executions_run_id", "run_id"),
        Index("ix_executions_test_case_id", "test_case_id", "created_at"),
        Index("ix_executions_root", "root_execution_id"),
        Index("ix_executions_status_run_at", "status", "run_at"),
        Index("ix_executions_status_lease", "status", "lease_expires_at"),
        Index("ix_executions_branch", "branch", "created_at"),
        Index("ix_executions_test_suite_id", "test_suite_id", "created_at"),
        Index("ix_executions_requested_by", "requested_by", "created_at"),
        UniqueConstraint("schedule_id", "slot_at", name="uq_executions_schedule_slot"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    test_case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_cases.id"))
    # Set on a suite execution (test_case_id is then NULL) and on its children.
    test_suite_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_suites.id"))
    # The top of the execution's tree (a suite execution, or itself); its events are numbered there.
    root_execution_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Last event number handed out in this root's stream (only meaningful on a root).
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    # What ran: the case's name, kind, spec and timeout when the execution was created.
    case_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    # Fencing token: bumped by every claim; later writes of an attempt check it.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    trigger_kind: Mapped[str] = mapped_column(String(16))
    correlation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    parent_execution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("executions.id"))
    run_id: Mapped[str | None] = mapped_column(String(200))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    published_at: Mapped[datetime | None] = mapped_column()
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    run_at: Mapped[datetime | None] = mapped_column()
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # The retry policy in force (resolved at submission) and which retry this is (0 = first try).
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    retry_index: Mapped[int] = mapped_column(Integer, default=0)
    # Passed on a retry after an earlier attempt of the same test failed.
    flaky: Mapped[bool] = mapped_column(Boolean, default=False)
    # Not started by then -> SKIPPED ("expired").
    expires_at: Mapped[datetime | None] = mapped_column()
    # Set by a cancel of a RUNNING execution: its worker stops the test and records CANCELLED.
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    # Fired by a schedule for this slot; (schedule_id, slot_at) is unique.
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("schedules.id"))
    slot_at: Mapped[datetime | None] = mapped_column()
    # Manual tests: the tester performing it while PAUSED.
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime | None] = mapped_column()
    # What was tested, as the submission said (a commit SHA, a branch, a free label); inherited by
    # a suite's members, retries and shards, and copied into every test result.
    revision: Mapped[str | None] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[str | None] = mapped_column(String(100))
    # The selection it ran (rules, counts, the selected tests): anvil/domain/selection.py.
    selection: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Set on a case execution split into shards (its children, trigger_kind shard): the count, each
    # shard's tests and planned time, then the actual times (db/shard_runs.py).
    shard_plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # A suite's or sharded case's quality gate verdict, written when it finishes (db/gates.py).
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class ExecutionTransition(Base):
    """Append-only: one row per status change, written in the same transaction."""

    __tablename__ = "execution_transitions"
    __table_args__ = (
        CheckConstraint(check_in("to_status", Status), name="to_status"),
        Index("ix_execution_transitions_execution", "execution_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)


class StepTrace(Base):
    __tablename__ = "step_traces"
    __table_args__ = (
        UniqueConstraint("execution_id", "attempt", "seq", name="uq_step_traces_execution_attempt_seq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    keyword: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[float | None] = mapped_column()
    output: Mapped[str | None] = mapped_column(Text)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ManualStepResult(Base):
    """Append-only history of what testers recorded for manual steps (the step row holds the last)."""

    __tablename__ = "manual_step_results"
    __table_args__ = (Index("ix_manual_step_results_execution", "execution_id", "attempt", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    actual: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExecutionEvent(Base):
    """The live-event log behind the SSE stream: each transition and step result, numbered per root.

    ``seq`` comes from the root execution's counter, bumped under its row lock in the same
    transaction, so within one stream the numbers appear in commit order: a client resuming
    after ``Last-Event-ID`` never misses an event that committed late.
    """

    __tablename__ = "execution_events"
    __table_args__ = (
        UniqueConstraint("root_execution_id", "seq", name="uq_execution_events_root_seq"),
        Index("ix_execution_events_execution", "execution_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    root_execution_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    type: Mapped[str] = mapped_column(String(16))  # "transition" | "step"
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ShardTest(Base):
    """One test of a sharded execution's plan: the shard it was planned for, and the shard
    execution that took it to run (db/shard_tests.py hands them out)."""

    __tablename__ = "shard_tests"
    __table_args__ = (
        UniqueConstraint("parent_execution_id", "key", name="uq_shard_tests_parent_key"),
        Index(
            "ix_shard_tests_untaken",
            "parent_execution_id",
            "shard",
            "position",
            postgresql_where=text("taken_by IS NULL"),
            sqlite_where=text("taken_by IS NULL"),
        ),
        Index("ix_shard_tests_taken_by", "taken_by"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    parent_execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    key: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)  # in collection order
    shard: Mapped[int] = mapped_column(Integer)  # planned for (1-based)
    planned_s: Mapped[float] = mapped_column()
    taken_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    taken_attempt: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column()
