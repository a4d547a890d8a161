"""pytest is a kind of its own

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 07:30:00.000000

A pytest run used to be a ``generic`` case whose spec held ``pytest: {args, env}`` instead of
``steps``; it is now kind ``pytest`` with ``args`` and ``env`` at the top of its spec. Stored cases
and the case snapshots of executions (which workers run from) are converted. The CHECK on
``test_cases.kind`` goes: the kinds are the runner registry's (anvil/domain/runners.py), checked by
the API, so a new kind needs no migration.
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('generic', 'bdd', 'manual')"
PYTEST_KEYS = ("args", "env")  # what the old spec held under "pytest"


def _flatten(spec: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in spec.items() if k != "pytest"}, **spec["pytest"]}


def _nest(spec: dict[str, Any]) -> dict[str, Any]:
    inner = {k: spec[k] for k in PYTEST_KEYS if k in spec}
    return {**{k: v for k, v in spec.items() if k not in PYTEST_KEYS}, "pytest": inner}


def _is_old(kind: str, spec: Any) -> bool:
    return kind == "generic" and isinstance(spec, dict) and isinstance(spec.get("pytest"), dict)


def _convert(to_new: bool) -> None:
    """Rewrite the specs (cases) and snapshots (executions) one way or the other, row by row: a
    JSON document's shape changes, which SQL on both PostgreSQL and SQLite cannot say portably."""
    bind = op.get_bind()
    cases = sa.table(
        "test_cases", sa.column("id"), sa.column("kind", sa.Text()), sa.column("spec", sa.JSON())
    )
    executions = sa.table("executions", sa.column("id"), sa.column("case_snapshot", sa.JSON()))
    old_kind, new_kind = ("generic", "pytest") if to_new else ("pytest", "generic")
    for ident, spec in bind.execute(
        sa.select(cases.c.id, cases.c.spec).where(cases.c.kind == old_kind)
    ).all():
        spec = json.loads(spec) if isinstance(spec, str) else spec
        if to_new and not _is_old("generic", spec):
            continue
        new_spec = _flatten(spec) if to_new else _nest(spec)
        bind.execute(sa.update(cases).where(cases.c.id == ident).values(kind=new_kind, spec=new_spec))
    # Only executions of that kind: on PostgreSQL the filter runs in the database.
    query = sa.select(executions.c.id, executions.c.case_snapshot)
    if bind.dialect.name == "postgresql":
        query = query.where(sa.text(f"case_snapshot->>'kind' = '{old_kind}'"))
    for ident, snapshot in bind.execute(query).all():
        snapshot = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
        if snapshot.get("kind") != old_kind or (to_new and not _is_old("generic", snapshot.get("spec"))):
            continue
        spec = _flatten(snapshot["spec"]) if to_new else _nest(snapshot["spec"])
        bind.execute(
            sa.update(executions)
            .where(executions.c.id == ident)
            .values(case_snapshot={**snapshot, "kind": new_kind, "spec": spec})
        )


def upgrade() -> None:
    with op.batch_alter_table("test_cases") as batch:
        batch.drop_constraint("kind", type_="check")
    _convert(to_new=True)


def downgrade() -> None:
    _convert(to_new=False)
    with op.batch_alter_table("test_cases") as batch:
        batch.create_check_constraint("kind", sa.text(OLD_KINDS))
