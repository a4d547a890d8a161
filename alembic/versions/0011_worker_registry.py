"""worker registry: the worker processes, their slots and queues, kept fresh by a heartbeat

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 09:00:00.000000

One row per Celery node name (db/workers.py): registered when the worker is ready, its
``heartbeat_at`` renewed every ANVIL_WORKER_HEARTBEAT_S, ``stopped_at`` set when it shuts down
gracefully. Live, stale and stopped are computed from those two columns; the partial index
``ix_workers_live`` holds the running ones by last heartbeat, which capacity reads scan.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
RUNNING = "stopped_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.CheckConstraint("slots > 0", name=op.f("ck_workers_slots_positive")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(
        "ix_workers_live",
        "workers",
        ["heartbeat_at"],
        postgresql_where=sa.text(RUNNING),
        sqlite_where=sa.text(RUNNING),
    )


def downgrade() -> None:
    op.drop_index("ix_workers_live", table_name="workers")
    op.drop_table("workers")
