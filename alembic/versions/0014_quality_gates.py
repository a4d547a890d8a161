"""quality gates: the rules a suite's runs are judged by, and each run's verdict

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 16:20:00.000000

``test_suites.gate`` holds a suite's gate rules (max_failures, min_pass_rate, no_new_failures,
max_duration_s, min_tests; a pytest or BDD case keeps its own in its spec). ``executions.gate`` holds
the verdict of a suite or sharded case run, written in the transaction that finishes it:
passed or failed, with each failed rule's measured value and limit (db/gates.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("test_suites") as batch:
        batch.add_column(sa.Column("gate", JSON, nullable=True))
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("gate", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("gate")
    with op.batch_alter_table("test_suites") as batch:
        batch.drop_column("gate")
