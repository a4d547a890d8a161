"""suites and the live event log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:29:59.197071
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "test_suites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "case_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("fail_fast", sa.Boolean(), nullable=False),
        sa.Column("default_priority", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "default_priority IN ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'DEFERRED')",
            name=op.f("ck_test_suites_default_priority"),
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_test_suites_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_suites")),
    )
    op.create_index(
        "uq_test_suites_live_name",
        "test_suites",
        ["name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "execution_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("root_execution_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"], name=op.f("fk_execution_events_execution_id_executions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_events")),
        sa.UniqueConstraint("root_execution_id", "seq", name="uq_execution_events_root_seq"),
    )
    op.create_index(
        "ix_execution_events_execution", "execution_events", ["execution_id", "seq"], unique=False
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("test_suite_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("root_execution_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False))
        batch.create_foreign_key(
            op.f("fk_executions_test_suite_id_test_suites"), "test_suites", ["test_suite_id"], ["id"]
        )
    # Executions made before suites existed are their own roots.
    op.execute("UPDATE executions SET root_execution_id = id")
    with op.batch_alter_table("executions") as batch:
        batch.alter_column("root_execution_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("event_seq", existing_type=sa.Integer(), server_default=None)
        batch.create_index("ix_executions_root", ["root_execution_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_root")
        batch.drop_constraint(op.f("fk_executions_test_suite_id_test_suites"), type_="foreignkey")
        batch.drop_column("event_seq")
        batch.drop_column("root_execution_id")
        batch.drop_column("test_suite_id")
    op.drop_index("ix_execution_events_execution", table_name="execution_events")
    op.drop_table("execution_events")
    op.drop_index(
        "uq_test_suites_live_name",
        table_name="test_suites",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("test_suites")
