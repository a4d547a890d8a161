"""shards: a case execution split into parts run beside each other

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:20:00.000000

A pytest or BDD case with ``shards`` is planned on a worker (its tests collected and split by
their recent durations) into child executions of trigger kind ``shard``; the parent keeps the plan
in ``executions.shard_plan`` and finishes like a suite once its shards have.
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


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint("trigger_kind", type_="check")
        batch.create_check_constraint("trigger_kind", f"trigger_kind IN ({KINDS})")
        batch.drop_column("shard_plan")
