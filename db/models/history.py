"""Test history: each test's identity, its results, quarantine events and the per-run rollups."""

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

from db.models.base import Base
from db.types import BigIntPK, JSONType, utcnow

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
