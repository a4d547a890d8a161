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
    # CONCURRENTLY on PostgreSQL (outside the migration's transaction): a plain CREATE INDEX blocks
    # every write to executions while it reads the table (about 8 s per million rows), and workers
    # of the previous release keep writing there during a rolling upgrade.
    # If it fails half-way, PostgreSQL keeps an INVALID index: DROP INDEX it, then upgrade again.
    with op.get_context().autocommit_block():
        for column in ("test_suite_id", "requested_by"):
            op.create_index(
                f"ix_executions_{column}", "executions", [column, "created_at"], postgresql_concurrently=True
            )


def downgrade() -> None:
    op.drop_index("ix_executions_requested_by", table_name="executions")
    op.drop_index("ix_executions_test_suite_id", table_name="executions")
