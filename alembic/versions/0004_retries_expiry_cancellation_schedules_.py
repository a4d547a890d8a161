"""retries, expiry, cancellation, schedules, scheduler lease

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:35:25.822894
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("test_case_id", sa.Uuid(), nullable=True),
        sa.Column("test_suite_id", sa.Uuid(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("last_slot_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "overlap IN ('skip', 'allow', 'cancel_previous')", name=op.f("ck_schedules_overlap")
        ),
        sa.CheckConstraint(
            "priority IN ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'DEFERRED')",
            name=op.f("ck_schedules_priority"),
        ),
        sa.CheckConstraint(
            "(test_case_id IS NULL) <> (test_suite_id IS NULL)", name=op.f("ck_schedules_one_target")
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_schedules_created_by_users")),
        sa.ForeignKeyConstraint(
            ["test_case_id"], ["test_cases.id"], name=op.f("fk_schedules_test_case_id_test_cases")
        ),
        sa.ForeignKeyConstraint(
            ["test_suite_id"], ["test_suites.id"], name=op.f("fk_schedules_test_suite_id_test_suites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    # Batch mode so SQLite (standalone) can add the constraints too; server defaults fill old rows.
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("retry_policy", json_type, server_default="{}", nullable=False))
        batch.add_column(sa.Column("retry_index", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("flaky", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("schedule_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("slot_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_executions_status_lease", ["status", "lease_expires_at"], unique=False)
        batch.create_index("ix_executions_status_run_at", ["status", "run_at"], unique=False)
        batch.create_unique_constraint("uq_executions_schedule_slot", ["schedule_id", "slot_at"])
        batch.create_foreign_key(
            op.f("fk_executions_schedule_id_schedules"), "schedules", ["schedule_id"], ["id"]
        )
    with op.batch_alter_table("executions") as batch:
        batch.alter_column("retry_policy", existing_type=json_type, server_default=None)
        batch.alter_column("retry_index", existing_type=sa.Integer(), server_default=None)
        batch.alter_column("flaky", existing_type=sa.Boolean(), server_default=None)
    op.add_column("test_cases", sa.Column("retry_policy", json_type, nullable=True))
    op.add_column("test_suites", sa.Column("retry_policy", json_type, nullable=True))


def downgrade() -> None:
    op.drop_column("test_suites", "retry_policy")
    op.drop_column("test_cases", "retry_policy")
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint(op.f("fk_executions_schedule_id_schedules"), type_="foreignkey")
        batch.drop_constraint("uq_executions_schedule_slot", type_="unique")
        batch.drop_index("ix_executions_status_run_at")
        batch.drop_index("ix_executions_status_lease")
        for column in (
            "slot_at",
            "schedule_id",
            "cancel_requested_at",
            "expires_at",
            "flaky",
            "retry_index",
            "retry_policy",
        ):
            batch.drop_column(column)
    op.drop_table("schedules")
    op.drop_table("scheduler_leases")
