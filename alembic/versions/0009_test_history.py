"""test history: tests, one result per test per execution, quarantine, selection

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:30:00.000000

``tests`` are what a team recognises from run to run (a pytest node id, a BDD scenario, a generic
or manual case); ``test_results`` hold one row per test per finished execution, written in the
same transaction as the execution's result (db/test_results.py). ``execution_id`` there is not a
foreign key: retention deletes old executions and keeps their results for statistics longer.
Nor is ``test_id``: checking it cost a tenth of recording a large run's results, and the only
writer takes the id from ``tests`` in the same statement; retention deletes a test only once it
has no results left.
``result_rollups`` hold one row per such execution (counts, a duration histogram, its slowest
tests): statistics over a window read one row per run, not one per test. The partial index
``ix_test_results_failing`` covers the few failing results, where flaky detection, the
most-failing tests and ``failed-in-last`` selection start.
Executions gain the submission's ``revision``, ``branch`` and ``environment`` and the
``selection`` they ran; cases and suites a ``file_map`` (changed source paths -> tests).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
RESULT_STATUSES = "status IN ('passed', 'failed', 'error', 'skipped')"
FAILING = "(status IN ('error', 'failed') OR flaky_retry IS true)"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("revision", sa.String(64), nullable=True))
        batch.add_column(sa.Column("branch", sa.String(255), nullable=True))
        batch.add_column(sa.Column("environment", sa.String(100), nullable=True))
        batch.add_column(sa.Column("selection", JSON, nullable=True))
    op.create_index("ix_executions_branch", "executions", ["branch", "created_at"])
    for table in ("test_cases", "test_suites"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("file_map", JSON, nullable=True))

    op.create_table(
        "tests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("test_case_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_execution_id", sa.Uuid(), nullable=True),
        sa.Column("quarantined_at", TS, nullable=True),
        sa.Column("quarantined_by", sa.String(255), nullable=True),
        sa.Column("quarantine_reason", sa.Text(), nullable=True),
        sa.Column("quarantine_expires_at", TS, nullable=True),
        sa.UniqueConstraint("test_case_id", "key", name="uq_tests_case_key"),
        sa.ForeignKeyConstraint(
            ["test_case_id"], ["test_cases.id"], name=op.f("fk_tests_test_case_id_test_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tests")),
    )
    op.create_index("ix_tests_name", "tests", ["name", "id"])
    op.create_index(
        "ix_tests_quarantined",
        "tests",
        ["test_case_id"],
        postgresql_where=sa.text("quarantined_at IS NOT NULL"),
        sqlite_where=sa.text("quarantined_at IS NOT NULL"),
    )
    op.create_table(
        "test_results",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("test_id", sa.Uuid(), nullable=False),
        sa.Column("test_case_id", sa.Uuid(), nullable=False),
        sa.Column("test_suite_id", sa.Uuid(), nullable=True),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("root_execution_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=True),
        sa.Column("trigger_kind", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_index", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(16), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("revision", sa.String(64), nullable=True),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("environment", sa.String(100), nullable=True),
        sa.Column("flaky_retry", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("quarantined", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("recorded_at", TS, nullable=False),
        sa.CheckConstraint(RESULT_STATUSES, name=op.f("ck_test_results_status")),
        sa.UniqueConstraint("execution_id", "test_id", name="uq_test_results_execution_test"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_results")),
    )
    op.create_index("ix_test_results_test", "test_results", ["test_id", "recorded_at"])
    op.create_index("ix_test_results_case", "test_results", ["test_case_id", "recorded_at"])
    # BRIN: results arrive in time order, so a block range index serves the window scans at a
    # fraction of a B-tree's size and insert cost.
    op.create_index("ix_test_results_recorded", "test_results", ["recorded_at"], postgresql_using="brin")
    op.create_index(
        "ix_test_results_failing",
        "test_results",
        ["test_case_id", "recorded_at", "test_id"],
        postgresql_where=sa.text(FAILING),
        sqlite_where=sa.text(FAILING),
    )
    op.create_table(
        "result_rollups",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("test_case_id", sa.Uuid(), nullable=False),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("durations", JSON, nullable=False),
        sa.Column("slowest", JSON, nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_result_rollups")),
    )
    op.create_index("ix_result_rollups_recorded", "result_rollups", ["recorded_at"])
    op.create_index("ix_result_rollups_case", "result_rollups", ["test_case_id", "recorded_at"])
    op.create_table(
        "test_quarantine_events",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("test_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.CheckConstraint(
            "action IN ('quarantined', 'released', 'expired')", name=op.f("ck_test_quarantine_events_action")
        ),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["tests.id"],
            name=op.f("fk_test_quarantine_events_test_id_tests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_quarantine_events")),
    )
    op.create_index("ix_test_quarantine_events_test", "test_quarantine_events", ["test_id", "id"])


def downgrade() -> None:
    op.drop_table("result_rollups")
    op.drop_table("test_quarantine_events")
    op.drop_table("test_results")
    op.drop_table("tests")
    for table in ("test_suites", "test_cases"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("file_map")
    op.drop_index("ix_executions_branch", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("selection")
        batch.drop_column("environment")
        batch.drop_column("branch")
        batch.drop_column("revision")
