"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:22:11.323358
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'maintainer', 'tester', 'viewer')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "test_cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('generic', 'bdd', 'manual')", name=op.f("ck_test_cases_kind")),
        sa.CheckConstraint("timeout_s > 0", name=op.f("ck_test_cases_timeout_positive")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_test_cases_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_cases")),
    )
    op.create_index(
        "uq_test_cases_live_name",
        "test_cases",
        ["name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("test_case_id", sa.Uuid(), nullable=True),
        sa.Column(
            "case_snapshot",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("trigger_kind", sa.String(length=16), nullable=False),
        sa.Column("correlation_id", sa.Uuid(), nullable=False),
        sa.Column("parent_execution_id", sa.Uuid(), nullable=True),
        sa.Column("run_id", sa.String(length=200), nullable=True),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "priority IN ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'DEFERRED')",
            name=op.f("ck_executions_priority"),
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SCHEDULED', 'QUEUED', 'RUNNING', 'PAUSED', 'PASSED', 'FAILED', 'ERROR', 'TIMEOUT', 'CANCELLED', 'SKIPPED', 'RETRYING', 'ABORTED')",
            name=op.f("ck_executions_status"),
        ),
        sa.CheckConstraint(
            "trigger_kind IN ('manual', 'api', 'ci', 'scheduled', 'retry', 'repair', 'child', 'agent')",
            name=op.f("ck_executions_trigger_kind"),
        ),
        sa.CheckConstraint(
            "attempt >= 0 AND attempt <= max_attempts", name=op.f("ck_executions_attempt_range")
        ),
        sa.ForeignKeyConstraint(
            ["parent_execution_id"],
            ["executions.id"],
            name=op.f("fk_executions_parent_execution_id_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_executions_requested_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["test_case_id"], ["test_cases.id"], name=op.f("fk_executions_test_case_id_test_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint("requested_by", "idempotency_key", name="uq_executions_idempotency"),
    )
    op.create_index("ix_executions_correlation_id", "executions", ["correlation_id"], unique=False)
    op.create_index("ix_executions_created", "executions", ["created_at", "id"], unique=False)
    op.create_index("ix_executions_parent_execution_id", "executions", ["parent_execution_id"], unique=False)
    op.create_index("ix_executions_run_id", "executions", ["run_id"], unique=False)
    op.create_index("ix_executions_status_queued", "executions", ["status", "queued_at"], unique=False)
    op.create_index("ix_executions_test_case_id", "executions", ["test_case_id", "created_at"], unique=False)
    op.create_index("ix_executions_trigger_kind", "executions", ["trigger_kind"], unique=False)
    op.create_table(
        "execution_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "to_status IN ('PENDING', 'SCHEDULED', 'QUEUED', 'RUNNING', 'PAUSED', 'PASSED', 'FAILED', 'ERROR', 'TIMEOUT', 'CANCELLED', 'SKIPPED', 'RETRYING', 'ABORTED')",
            name=op.f("ck_execution_transitions_to_status"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_transitions_execution_id_executions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_transitions")),
    )
    op.create_index(
        "ix_execution_transitions_execution",
        "execution_transitions",
        ["execution_id", "id"],
        unique=False,
    )
    op.create_table(
        "step_traces",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("output_truncated", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"], name=op.f("fk_step_traces_execution_id_executions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_traces")),
        sa.UniqueConstraint("execution_id", "attempt", "seq", name="uq_step_traces_execution_attempt_seq"),
    )


def downgrade() -> None:
    op.drop_table("step_traces")
    op.drop_index("ix_execution_transitions_execution", table_name="execution_transitions")
    op.drop_table("execution_transitions")
    op.drop_index("ix_executions_trigger_kind", table_name="executions")
    op.drop_index("ix_executions_test_case_id", table_name="executions")
    op.drop_index("ix_executions_status_queued", table_name="executions")
    op.drop_index("ix_executions_run_id", table_name="executions")
    op.drop_index("ix_executions_parent_execution_id", table_name="executions")
    op.drop_index("ix_executions_created", table_name="executions")
    op.drop_index("ix_executions_correlation_id", table_name="executions")
    op.drop_table("executions")
    op.drop_index(
        "uq_test_cases_live_name",
        table_name="test_cases",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("test_cases")
    op.drop_table("users")
