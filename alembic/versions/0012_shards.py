"""shards: a case execution split into parts run beside each other

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:20:00.000000

A pytest or BDD case with ``shards`` is planned on a worker (its tests collected and split by
their recent durations) into child executions of trigger kind ``shard``; the parent keeps the plan
in ``executions.shard_plan`` and finishes like a suite once its shards have. ``shard_tests`` holds
the plan's tests, each with the shard it was planned for and the shard execution that took it: a
shard's worker takes its own tests from there a few at a time, and once they are gone, unstarted
tests of the shard with the most planned time left (work stealing, ``FOR UPDATE SKIP LOCKED``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
KINDS = "'manual', 'api', 'ci', 'scheduled', 'retry', 'repair', 'child', 'agent'"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("shard_plan", JSON, nullable=True))
        batch.drop_constraint("trigger_kind", type_="check")
        batch.create_check_constraint("trigger_kind", f"trigger_kind IN ({KINDS}, 'shard')")
    op.create_table(
        "shard_tests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("parent_execution_id", sa.Uuid(), sa.ForeignKey("executions.id"), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("planned_s", sa.Float(), nullable=False),
        sa.Column("taken_by", sa.Uuid(), nullable=True),
        sa.Column("taken_attempt", sa.Integer(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("parent_execution_id", "key", name="uq_shard_tests_parent_key"),
    )
    op.create_index(
        "ix_shard_tests_untaken",
        "shard_tests",
        ["parent_execution_id", "shard", "position"],
        postgresql_where=sa.text("taken_by IS NULL"),
        sqlite_where=sa.text("taken_by IS NULL"),
    )
    op.create_index("ix_shard_tests_taken_by", "shard_tests", ["taken_by"])


def downgrade() -> None:
    op.drop_table("shard_tests")
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint("trigger_kind", type_="check")
        batch.create_check_constraint("trigger_kind", f"trigger_kind IN ({KINDS})")
        batch.drop_column("shard_plan")
