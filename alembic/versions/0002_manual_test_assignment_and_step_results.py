"""manual test assignment and step results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:27:42.092184
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "manual_step_results",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actual", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"], name=op.f("fk_manual_step_results_execution_id_executions")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["users.id"], name=op.f("fk_manual_step_results_recorded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manual_step_results")),
    )
    op.create_index(
        "ix_manual_step_results_execution",
        "manual_step_results",
        ["execution_id", "attempt", "seq"],
        unique=False,
    )
    # Batch mode so SQLite (standalone) can add the foreign key too.
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("assigned_to", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(op.f("fk_executions_assigned_to_users"), "users", ["assigned_to"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint(op.f("fk_executions_assigned_to_users"), type_="foreignkey")
        batch.drop_column("assigned_at")
        batch.drop_column("assigned_to")
    op.drop_index("ix_manual_step_results_execution", table_name="manual_step_results")
    op.drop_table("manual_step_results")
