"""schedules disabled with a reason

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 03:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Schedules whose target was deleted before this revision stayed enabled and skipped every slot.
ORPHANED = """
UPDATE schedules SET enabled = false, disabled_reason = :reason
WHERE (test_case_id IN (SELECT id FROM test_cases WHERE deleted_at IS NOT NULL))
   OR (test_suite_id IN (SELECT id FROM test_suites WHERE deleted_at IS NOT NULL))
"""


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
    op.get_bind().execute(
        sa.text(ORPHANED),
        {"reason": "its test case or suite had been deleted (found when Anvil was upgraded)"},
    )


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("disabled_reason")
