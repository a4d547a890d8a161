"""SQLAlchemy 2.0 models. The schema changes only through Alembic (alembic/versions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.states import Status
from db.types import BigIntPK, JSONType, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def check_in(column: str, values: type[StrEnum]) -> str:
    """SQL for a CHECK constraint that keeps a string column within an enum."""
    quoted = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(check_in("role", Role), name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Carried by its access tokens ("gen"); raised when the user is deactivated or changes password
    # or role, which revokes every token issued before (api/deps.py).
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A long-lived bearer token for a bot (CI), shown once and stored as its SHA-256 (db/tokens.py)."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(check_in("role", Role), name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class LoginThrottle(Base):
    """Consecutive failed logins of one username or one client address (db/throttle.py)."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()


class TestCase(Base):
    __tablename__ = "test_cases"
    __table_args__ = (
        CheckConstraint("timeout_s > 0", name="timeout_positive"),
        Index(
            "uq_test_cases_live_name",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )
    __test__ = False  # not a pytest class

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    timeout_s: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    # {"max_retries", "retry_on", "backoff_base_s", "backoff_cap_s", "jitter"}; None = server defaults.
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Soft delete: executions keep pointing at the case they ran.
    deleted_at: Mapped[datetime | None] = mapped_column()
    # Changed-files selection: glob of source paths -> the tests they select ({"src/pay/**": [...]}).
    file_map: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class TestSuite(Base):
    __tablename__ = "test_suites"
    __table_args__ = (
        CheckConstraint(check_in("default_priority", Priority), name="default_priority"),
        Index(
            "uq_test_suites_live_name",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )
    __test__ = False

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # Members: explicit case ids, and/or every live case carrying any of these tags.
    case_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    fail_fast: Mapped[bool] = mapped_column(Boolean, default=False)
    default_priority: Mapped[str] = mapped_column(String(16), default="NORMAL")
    # Overrides its members' case policies when set.
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()
    file_map: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Quality gate rules its runs are judged by when they finish (anvil/domain/gates.py).
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


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


class Schedule(Base):
    """A cron schedule firing a case or a suite (e.g. a nightly suite)."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(check_in("priority", Priority), name="priority"),
        CheckConstraint("overlap IN ('skip', 'allow', 'cancel_previous')", name="overlap"),
        CheckConstraint("(test_case_id IS NULL) <> (test_suite_id IS NULL)", name="one_target"),
        UniqueConstraint("name", name="uq_schedules_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    test_case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_cases.id"))
    test_suite_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_suites.id"))
    priority: Mapped[str] = mapped_column(String(16), default="NORMAL")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the system disabled it (its case or suite was deleted); cleared when it is enabled again.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The latest slot fired (or deliberately passed over); slots at or before it never fire again.
    last_slot_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SchedulerLease(Base):
    """Which beat process acts on the tick right now (several may run; one holds the lease)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column()


class Worker(Base):
    """A worker process, kept fresh by its heartbeat (db/workers.py, workers/registry.py): how many
    test slots it has and which queues it consumes. Its state (live, stale, stopped) is computed
    from ``heartbeat_at`` and ``stopped_at`` (anvil/domain/workers.py)."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint("slots > 0", name="slots_positive"),
        # The running ones, by last heartbeat: what capacity reads (live_slots) scan.
        Index(
            "ix_workers_live",
            "heartbeat_at",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The Celery node name (celery@host, w1@host): one row per name, taken over by a restart.
    name: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    # Queue names it consumes, highest priority first.
    queues: Mapped[list[str]] = mapped_column(JSONType)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    heartbeat_at: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column()


class TestSecret(Base):
    """A value tests need (a deploy token), named in specs' env, stored encrypted (db/secrets.py)."""

    __tablename__ = "test_secrets"
    __table_args__ = (UniqueConstraint("name", name="uq_test_secrets_name"),)
    __test__ = False  # not a pytest class

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    # A Fernet token (URL-safe base64) of the name and the value; never the plaintext.
    value_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))


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


# In parentheses: it is also ANDed into queries as SQL text (db/flaky.py).
FAILING_RESULTS = "(status IN ('error', 'failed') OR flaky_retry IS true)"


class Test(Base):
    """One test a team recognises from run to run: a pytest node id, a BDD scenario (feature file,
    scenario, example row), or a whole generic or manual case (anvil/domain/results.py)."""

    __tablename__ = "tests"
    __table_args__ = (
        UniqueConstraint("test_case_id", "key", name="uq_tests_case_key"),
        Index("ix_tests_name", "name", "id"),
        # The quarantined few, read at every claim and by the expiry duty.
        Index(
            "ix_tests_quarantined",
            "test_case_id",
            postgresql_where=text("quarantined_at IS NOT NULL"),
            sqlite_where=text("quarantined_at IS NOT NULL"),
        ),
    )
    __test__ = False

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    test_case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("test_cases.id"))
    key: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    # The workspace path it lives in (changed-files selection), when the kind has one.
    file: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Quarantined: still run and recorded, but its failures do not fail an execution or suite.
    quarantined_at: Mapped[datetime | None] = mapped_column()
    quarantined_by: Mapped[str | None] = mapped_column(String(255))
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    quarantine_expires_at: Mapped[datetime | None] = mapped_column()


class TestResult(Base):
    """One result of one test in one finished execution, written with the execution's result.

    Neither ``execution_id`` nor ``test_id`` is a foreign key: retention deletes executions before
    their results, and the only writer takes the test id from ``tests`` in the same statement.
    """

    __tablename__ = "test_results"
    __table_args__ = (
        CheckConstraint("status IN ('passed', 'failed', 'error', 'skipped')", name="status"),
        UniqueConstraint("execution_id", "test_id", name="uq_test_results_execution_test"),
        # With what the history reads of each result (migration 0010 says why).
        Index(
            "ix_test_results_test",
            "test_id",
            "recorded_at",
            postgresql_include=[
                "test_case_id",
                "status",
                "revision",
                "branch",
                "execution_id",
                "flaky_retry",
            ],  # fmt: skip
        ),
        Index("ix_test_results_case", "test_case_id", "recorded_at"),
        Index("ix_test_results_recorded", "recorded_at", postgresql_using="brin"),
        # The few failing results (and passes on a retry): where flaky detection, most-failing
        # tests and failed-in-last selection start, without reading the passes.
        Index(
            "ix_test_results_failing",
            "test_case_id",
            "recorded_at",
            "test_id",
            postgresql_where=text(FAILING_RESULTS),
            sqlite_where=text(FAILING_RESULTS),
        ),
    )
    __test__ = False

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    test_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    test_case_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    test_suite_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    root_execution_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    run_id: Mapped[str | None] = mapped_column(String(200))
    trigger_kind: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    retry_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # passed / failed / error / skipped; ``detail`` keeps xfailed, xpassed, timeout, ...
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column()
    revision: Mapped[str | None] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[str | None] = mapped_column(String(100))
    # Passed on a retry after an earlier execution of the same test failed.
    flaky_retry: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The test was quarantined when it ran: its failure did not fail the execution.
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    recorded_at: Mapped[datetime] = mapped_column()


class TestQuarantineEvent(Base):
    """Audit of quarantine changes: who quarantined or released a test, when and why."""

    __tablename__ = "test_quarantine_events"
    __table_args__ = (
        CheckConstraint("action IN ('quarantined', 'released', 'expired')", name="action"),
        Index("ix_test_quarantine_events_test", "test_id", "id"),
    )
    __test__ = False

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    test_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column()
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ResultRollup(Base):
    """One row per execution that recorded test results, written with them: its counts, a histogram
    of its tests' durations (anvil/domain/histograms.py) and its slowest tests. Statistics over a
    window read these, one row per run, instead of every result."""

    __tablename__ = "result_rollups"
    __table_args__ = (
        Index("ix_result_rollups_recorded", "recorded_at"),
        Index("ix_result_rollups_case", "test_case_id", "recorded_at"),
    )

    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # A shard's rollup: its parent, the run it is part of (statistics count runs); else null.
    run_execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    test_case_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch: Mapped[str | None] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column()
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    error: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    durations: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # [[test id, duration], ...] of its SLOWEST_KEPT slowest tests, slowest first.
    slowest: Mapped[list[Any]] = mapped_column(JSONType)


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


class Webhook(Base):
    """A subscription: where to POST which events, in which format, signed with its own secret."""

    __tablename__ = "webhooks"
    __table_args__ = (CheckConstraint("format IN ('standard', 'slack', 'teams')", name="format"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    events: Mapped[list[str]] = mapped_column(JSONType)
    # case_ids, suite_ids, schedule_ids, statuses, only_changes (anvil/domain/webhooks.matches).
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The signing secret (whsec_...), a Fernet token under ANVIL_SECRETS_KEY bound to this id.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one row per (subscription, event), written in the event's own transaction, so a
    rolled-back change sends nothing and a committed one is never lost. Its id is the ``webhook-id``
    a receiver deduplicates on; the row is also the subscription's delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    # The event envelope ({"type", "timestamp", "data"}); the body is made from it when sent.
    event: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sender took it until then (a sender that dies mid-request leaves it to another afterwards).
    locked_until: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
