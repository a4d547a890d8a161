"""Migrations: head matches the models on PostgreSQL and SQLite, and every step round-trips."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from anvil.migrate import alembic_config, downgrade, upgrade
from db.models import Base
from db.session import make_engine
from tests.conftest import RUN, _drop, clone_database, sqlalchemy_url

# Per session: sessions running side by side would drop each other's database.
EMPTY_DB = f"anvil_migrations_test_{RUN}"


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path, template_db: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'anvil.db'}"
        return
    from tests.conftest import _admin

    _drop(EMPTY_DB)
    _admin(f'CREATE DATABASE "{EMPTY_DB}"')
    yield sqlalchemy_url(EMPTY_DB)
    _drop(EMPTY_DB)


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_head_matches_the_models(empty_url: str) -> None:
    upgrade(empty_url)
    assert tables(empty_url) == set(Base.metadata.tables)
    # `alembic check` fails when autogenerate would find any difference from the models.
    command.check(alembic_config(empty_url))


def test_every_migration_downgrades_and_upgrades_again(empty_url: str) -> None:
    steps = [
        (r.revision, r.down_revision or "base")
        for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    ]
    assert len(steps) >= 4
    upgrade(empty_url)
    for revision, previous in steps:  # newest first: down one step, up again, down again
        downgrade(empty_url, str(previous))
        upgrade(empty_url, revision)
        downgrade(empty_url, str(previous))
    assert tables(empty_url) == set()
    upgrade(empty_url)
    command.check(alembic_config(empty_url))


def test_migrations_keep_existing_rows(template_db: str) -> None:
    """Upgrading a database that already has executions (from before suites) keeps them usable."""
    url = clone_database(EMPTY_DB)
    try:
        downgrade(url, "0002")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO executions (id, case_snapshot, status, priority, attempt, max_attempts, "
                "trigger_kind, correlation_id, params, created_at, publish_count, summary) VALUES "
                "('00000000-0000-0000-0000-000000000001', '{}', 'PASSED', 'NORMAL', 1, 3, 'api', "
                "'00000000-0000-0000-0000-000000000001', '{}', now(), 1, '{}')"
            )
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT root_execution_id, event_seq, retry_index, flaky FROM executions"
            ).one()
        engine.dispose()
        assert str(row[0]) == "00000000-0000-0000-0000-000000000001" and row[1:] == (0, 0, False)
    finally:
        _drop(EMPTY_DB)


OLD_PYTEST_SPEC = {"workspace": "py", "network": False, "pytest": {"args": ["-k", "fast"], "env": {"A": "1"}}}
NEW_PYTEST_SPEC = {"workspace": "py", "network": False, "args": ["-k", "fast"], "env": {"A": "1"}}
STEPS_SPEC = {"workspace": "demo", "steps": [{"run": ["true"]}]}


def test_pytest_cases_become_their_own_kind_and_back(empty_url: str) -> None:
    """0008: stored generic cases with a pytest spec, and the snapshots executions run from, turn
    into kind pytest (other generic cases stay as they are); the downgrade turns them back."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from db.models import Execution, TestCase

    upgrade(empty_url, "0007")
    engine = make_engine(empty_url)
    now = datetime.now(UTC)
    case_row = {"tags": [], "timeout_s": 60, "version": 1, "created_at": now, "updated_at": now}
    ids = {"pytest": uuid.uuid4(), "steps": uuid.uuid4()}
    with engine.begin() as conn:
        conn.execute(
            insert(TestCase.__table__),
            [
                {**case_row, "id": ids["pytest"], "name": "py", "kind": "generic", "spec": OLD_PYTEST_SPEC},
                {**case_row, "id": ids["steps"], "name": "steps", "kind": "generic", "spec": STEPS_SPEC},
            ],
        )
        for name, spec in (("pytest", OLD_PYTEST_SPEC), ("steps", STEPS_SPEC)):
            snapshot = {
                "name": name,
                "kind": "generic",
                "spec": spec,
                "timeout_s": 60,
                "version": 1,
                "tags": [],
            }
            conn.execute(
                insert(Execution.__table__).values(
                    id=ids[name], test_case_id=ids[name], case_snapshot=snapshot, status="QUEUED",
                    priority="NORMAL", attempt=0, max_attempts=3, trigger_kind="api",
                    correlation_id=ids[name], root_execution_id=ids[name], event_seq=0, params={},
                    created_at=now, publish_count=0, summary={}, retry_policy={}, retry_index=0, flaky=False,
                )
            )  # fmt: skip

    def stored() -> dict[str, tuple[str, dict[str, object], str, dict[str, object]]]:
        with engine.connect() as conn:
            cases = {r.id: r for r in conn.execute(select(TestCase.kind, TestCase.spec, TestCase.id))}
            runs = {
                r.id: r.case_snapshot for r in conn.execute(select(Execution.id, Execution.case_snapshot))
            }
        return {
            name: (cases[i].kind, cases[i].spec, runs[i]["kind"], runs[i]["spec"]) for name, i in ids.items()
        }

    try:
        upgrade(empty_url)
        assert stored() == {
            "pytest": ("pytest", NEW_PYTEST_SPEC, "pytest", NEW_PYTEST_SPEC),
            "steps": ("generic", STEPS_SPEC, "generic", STEPS_SPEC),
        }
        downgrade(empty_url, "0007")
        assert stored() == {
            "pytest": ("generic", OLD_PYTEST_SPEC, "generic", OLD_PYTEST_SPEC),
            "steps": ("generic", STEPS_SPEC, "generic", STEPS_SPEC),
        }
    finally:
        engine.dispose()
