"""result_rollups: the run a shard's rollup belongs to

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 23:00:00.000000

A sharded run writes one rollup per shard (each recorded its own tests); statistics count runs,
so each rollup of a shard names its parent in ``run_execution_id`` (null for every other run,
which is its own). Existing shards' rollups are filled in from ``executions``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("result_rollups", sa.Column("run_execution_id", sa.Uuid(), nullable=True))
    op.execute(
        """
        UPDATE result_rollups AS r SET run_execution_id = e.parent_execution_id
        FROM executions AS e
        WHERE e.id = r.execution_id AND e.trigger_kind = 'shard'
        """
    )


def downgrade() -> None:
    op.drop_column("result_rollups", "run_execution_id")
