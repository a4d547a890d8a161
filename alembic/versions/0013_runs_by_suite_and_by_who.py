"""runs by suite and by who: the indexes behind the web interface's run lists

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 16:10:00.000000

A suite's page lists its last runs, and the runs page filters by who asked; both order by
creation time. Without these an index walk backwards over every execution finds a suite that
rarely runs, or a user who rarely submits, only after reading the whole table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_executions_test_suite_id", "executions", ["test_suite_id", "created_at"])
    op.create_index("ix_executions_requested_by", "executions", ["requested_by", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_requested_by", table_name="executions")
    op.drop_index("ix_executions_test_suite_id", table_name="executions")
