"""history reads from the test index alone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:45:00.000000

``ix_test_results_test`` (test, time) now also carries what flaky detection, ``failed-in-last``
selection and the same-revision check read of each result (case, status, revision, branch,
execution, passed-on-retry). Those reads walk a test's results in the window, which lie one per
heap page (a test's results are written a run apart): from the index alone, on a vacuumed table,
the flaky check of a 5,000-test selection reads 760 pages instead of 3,600. PostgreSQL only;
SQLite keeps the plain index. On a large table run this in a quiet hour: the index is rebuilt.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARRIED = ["test_case_id", "status", "revision", "branch", "execution_id", "flaky_retry"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_test_results_test", table_name="test_results")
    op.create_index(
        "ix_test_results_test", "test_results", ["test_id", "recorded_at"], postgresql_include=CARRIED
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_test_results_test", table_name="test_results")
    op.create_index("ix_test_results_test", "test_results", ["test_id", "recorded_at"])
