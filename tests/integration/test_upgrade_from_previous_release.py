"""`anvil db upgrade` on a database of the previous release keeps every row, reads through the API
afterwards, does nothing the second time, and leaves a schema the previous release's code can still
write to (what a rolling upgrade relies on: new API and old workers side by side on one schema).

The database is tests/fixtures/previous_release.sql (made by make_previous_release_dump.py in that
folder): the schema at migration 0012 with users, tokens, a case of each kind, suites, schedules,
executions in every status with their transitions, steps, events, test results and quarantine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg.types.json import Jsonb

from anvil.migrate import alembic_config
from tests.conftest import PG_ADMIN, RUN, _admin, _drop, sqlalchemy_url

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release.sql"
PREVIOUS_RELEASE = "0012"
DB = f"anvil_prev_release_{RUN}"
CI_TOKEN = "anvil_previous-release-fixture-ci-bot-token-00000"  # ci-bot's, in the dump (hashed)
STATUSES = {
    "PENDING",
    "SCHEDULED",
    "QUEUED",
    "RUNNING",
    "PAUSED",
    "PASSED",
    "FAILED",
    "ERROR",
    "TIMEOUT",
    "CANCELLED",
    "SKIPPED",
    "RETRYING",
    "ABORTED",
}
TRIGGERS = {"manual", "api", "ci", "scheduled", "retry", "repair", "child", "agent", "shard"}
# Rows a migration deliberately rewrites, by table: none since the previous release.
REWRITTEN: dict[str, set[str]] = {}

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
Columns = dict[str, dict[str, tuple[str, bool, bool]]]  # table -> column -> (type, nullable, has default)


def pg_url(dbname: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname


def columns(conn: psycopg.Connection[Any]) -> Columns:
    found: Columns = {}
    for table, column, type_, nullable, default in conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable = 'YES', column_default IS NOT NULL "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
    ):
        found.setdefault(table, {})[column] = (type_, nullable, default)
    return found


def rows(conn: psycopg.Connection[Any], tables: Columns) -> Rows:
    """Every row of every table, by primary key, as JSON."""
    found: Rows = {}
    for table in tables:
        key = [
            r[0]
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                "ORDER BY a.attnum",
                (f"public.{table}",),
            )
        ]
        assert key, f"{table} has no primary key"
        found[table] = {
            tuple(r[k] for k in key): r for (r,) in conn.execute(f"SELECT to_jsonb(t) FROM {table} t")
        }
    return found


def version(conn: psycopg.Connection[Any]) -> str:
    return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])  # type: ignore[index]


def anvil(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it: the `anvil` script of this environment."""
    script = Path(sys.executable).with_name("anvil")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "anvil.cli"]
    env = {**os.environ, "ANVIL_DATABASE_URL": url}
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=120)


def anvil_db_upgrade(url: str) -> str:
    done = anvil(url, "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def schema_dump(dbname: str) -> str:
    text = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", f"--dbname={pg_url(dbname)}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # pg_dump 15.14+ fences its output with \restrict <a random key per run>.
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


@dataclass
class Upgrade:
    url: str
    before_columns: Columns
    before: Rows
    before_version: str
    before_current: subprocess.CompletedProcess[str]
    after_columns: Columns
    after: Rows
    after_version: str
    output: str


@pytest.fixture(scope="module")
def upgraded() -> Iterator[Upgrade]:
    """The dump loaded into a database of its own, looked at, upgraded with `anvil db upgrade`, looked at."""
    _drop(DB)
    _admin(f'CREATE DATABASE "{DB}"')
    try:
        subprocess.run(
            [
                "psql",
                "--quiet",
                "--no-psqlrc",
                "-v",
                "ON_ERROR_STOP=1",
                f"--dbname={pg_url(DB)}",
                "--file",
                str(FIXTURE),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        with psycopg.connect(pg_url(DB)) as conn:
            before_columns, before_version = columns(conn), version(conn)
            before = rows(conn, before_columns)
        before_current = anvil(sqlalchemy_url(DB), "db", "current")
        output = anvil_db_upgrade(sqlalchemy_url(DB))
        with psycopg.connect(pg_url(DB)) as conn:
            after_columns, after_version = columns(conn), version(conn)
            after = rows(conn, after_columns)
        yield Upgrade(
            sqlalchemy_url(DB),
            before_columns,
            before,
            before_version,
            before_current,
            after_columns,
            after,
            after_version,
            output,
        )
    finally:
        from db.session import _engines

        for key in [k for k in _engines if k[1] == sqlalchemy_url(DB)]:
            _engines.pop(key).dispose()
        _drop(DB)


def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations have {len(heads)} heads: {heads}"
    return str(heads[0])


def test_the_dump_is_the_previous_release_with_data_in_every_table(upgraded: Upgrade) -> None:
    assert upgraded.before_version == PREVIOUS_RELEASE
    empty = sorted(table for table, found in upgraded.before.items() if not found)
    assert empty == [], f"the fixture has no rows in {empty}: regenerate it with rows there"
    executions = upgraded.before["executions"].values()
    assert {e["status"] for e in executions} == STATUSES
    assert {e["trigger_kind"] for e in executions} == TRIGGERS
    assert {c["kind"] for c in upgraded.before["test_cases"].values()} == {
        "generic",
        "pytest",
        "bdd",
        "manual",
    }


def test_upgrade_reaches_head_and_keeps_every_row(upgraded: Upgrade) -> None:
    assert upgraded.after_version == head() != PREVIOUS_RELEASE
    assert upgraded.output == f"database at {head()} (head), upgraded from {PREVIOUS_RELEASE}\n"
    # Before it, `anvil db current` said the database was behind (exit 1), for a deployment to check.
    assert upgraded.before_current.returncode == 1, upgraded.before_current
    assert upgraded.before_current.stdout.startswith(
        f"{PREVIOUS_RELEASE} (this Anvil's migrations go to {head()}"
    )
    assert set(upgraded.before) <= set(upgraded.after), "a table of the previous release is gone"
    for table, old_rows in upgraded.before.items():
        new_rows = upgraded.after[table]
        missing = set(old_rows) - set(new_rows)
        assert not missing, f"{table}: rows {sorted(missing)[:5]} are gone"
        assert len(new_rows) >= len(old_rows), table
        if table in REWRITTEN:
            continue
        old_columns = set(upgraded.before_columns[table])
        changed = [key for key, old in old_rows.items() if {c: new_rows[key][c] for c in old_columns} != old]
        assert not changed, f"{table}: rows {changed[:5]} changed (a migration that rewrites data: REWRITTEN)"


def test_a_second_upgrade_is_a_no_op(upgraded: Upgrade) -> None:
    schema = schema_dump(DB)
    with psycopg.connect(pg_url(DB)) as conn:
        data = rows(conn, columns(conn))
    assert anvil_db_upgrade(upgraded.url) == f"database at {head()} (head): nothing to do\n"
    assert schema_dump(DB) == schema
    with psycopg.connect(pg_url(DB)) as conn:
        assert version(conn) == head()
        assert rows(conn, columns(conn)) == data
    current = anvil(upgraded.url, "db", "current")
    assert (current.returncode, current.stdout) == (0, f"{head()} (head)\n")


def test_the_schema_only_grew(upgraded: Upgrade) -> None:
    """Every column of the previous release is still there with its type; every new column of an
    old table can be left out of an INSERT (nullable or defaulted), or old code could not insert."""
    for table, old in upgraded.before_columns.items():
        new = upgraded.after_columns[table]
        assert set(old) <= set(new), f"{table} lost {set(old) - set(new)}"
        retyped = {c: (t[0], new[c][0]) for c, t in old.items() if t[0] != new[c][0]}
        assert not retyped, f"{table}: columns changed type (from, to): {retyped}"
        required = [c for c in set(new) - set(old) if not new[c][1] and not new[c][2]]
        assert not required, f"{table}: new NOT NULL columns without a default {required} break old inserts"


def old_code_rows(ex: str) -> dict[str, dict[str, Any]]:
    """Per table of the previous release: what to change in a copy of one of its rows to make it a
    new row (DROP: leave a serial id to its sequence, as the code does)."""
    new, name = lambda: str(uuid.uuid4()), "made-by-old-code"
    execution = {
        "id": ex,
        "root_execution_id": ex,
        "correlation_id": ex,
        "parent_execution_id": None,
        "idempotency_key": None,
        "schedule_id": None,
        "slot_at": None,
        "status": "QUEUED",
        "attempt": 0,
        "event_seq": 1,
    }
    return {
        "users": {"id": new(), "username": name},
        "api_tokens": {"id": new(), "token_hash": "0" * 64},
        "login_throttles": {"key": f"user:{name}"},
        "test_secrets": {"id": new(), "name": name},
        "test_cases": {"id": new(), "name": name},
        "test_suites": {"id": new(), "name": name},
        "schedules": {"id": new(), "name": name},
        "workers": {"id": new(), "name": f"celery@{name}"},
        "scheduler_leases": {"name": name},
        "executions": execution,
        "execution_transitions": {"id": DROP, "execution_id": ex},
        "step_traces": {"id": DROP, "execution_id": ex},
        "manual_step_results": {"id": DROP, "execution_id": ex},
        "execution_events": {"id": DROP, "execution_id": ex, "root_execution_id": ex, "seq": 1},
        "shard_tests": {"id": DROP, "parent_execution_id": ex},
        "tests": {"id": new(), "key": name},
        "test_quarantine_events": {"id": DROP},
        "test_results": {"id": DROP, "execution_id": ex},
        "result_rollups": {"execution_id": ex},
    }


DROP = object()


def insert_old(conn: psycopg.Connection[Any], table: str, old_columns: set[str], row: dict[str, Any]) -> None:
    """An INSERT naming only columns the previous release knew (those of ``row``); the others get
    their defaults, as they would from the old code."""
    assert set(row) <= old_columns, f"{table}: not a column of the previous release: {set(row) - old_columns}"
    names = ", ".join(row)
    conn.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_populate_record(NULL::{table}, %s)",
        (Jsonb(row),),
    )


def test_writes_of_the_previous_release_succeed_on_the_new_schema(upgraded: Upgrade) -> None:
    """What old workers and an old API write while they run beside the new schema (a rolling
    upgrade): a new row in every table, naming only the columns of the previous release, then an
    attempt finished and a suite run settled the old way. Rolled back at the end."""
    ex = str(uuid.uuid4())
    changes = old_code_rows(ex)
    assert set(changes) == set(upgraded.before_columns), (
        "a table of the previous release has no old write here"
    )
    with psycopg.connect(pg_url(DB)) as conn:
        for table in changes:  # foreign keys point up the list
            row = {**next(iter(upgraded.before[table].values())), **changes[table]}
            # Serial ids after a restore: the sequences (pg_dump's setval) must be past the restored rows.
            insert_old(
                conn,
                table,
                set(upgraded.before_columns[table]),
                {k: v for k, v in row.items() if v is not DROP},
            )
        finished = conn.execute(
            "UPDATE executions SET status = 'PASSED', attempt = 1, finished_at = now(),"
            " summary = '{\"total\": 1}' WHERE id = %s AND status = 'QUEUED' RETURNING status, gate",
            (ex,),
        ).fetchone()
        assert finished == ("PASSED", None)
        suite_run = next(
            e for e in upgraded.before["executions"].values() if e["case_snapshot"]["kind"] == "suite"
        )
        settled = conn.execute(
            "UPDATE executions SET summary = summary WHERE id = %s RETURNING gate", (suite_run["id"],)
        ).fetchone()
        assert settled == (None,), "a suite run of the previous release has no gate verdict"
        conn.rollback()


@pytest.fixture
def api_on_upgraded(upgraded: Upgrade) -> Iterator[Any]:
    """The API in-process (TestClient) with the settings pointed at the upgraded database."""
    from anvil.settings import get_settings
    from tests.integration.conftest import TestClient

    before = os.environ["ANVIL_DATABASE_URL"]
    os.environ["ANVIL_DATABASE_URL"] = upgraded.url
    get_settings.cache_clear()
    try:
        from api.app import app

        with TestClient(app) as client:
            yield client
    finally:
        os.environ["ANVIL_DATABASE_URL"] = before
        get_settings.cache_clear()


def test_the_upgraded_data_reads_through_the_api(api_on_upgraded: Any) -> None:
    client = api_on_upgraded
    # A password set by the previous release still signs in; its bot token still works.
    login = client.post("/api/v1/auth/token", data={"username": "alice", "password": "pw"})
    assert login.status_code == 200, login.text
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    bot = {"Authorization": f"Bearer {CI_TOKEN}"}

    cases = client.get("/api/v1/test-cases", headers=bot)
    assert cases.status_code == 200, cases.text
    assert sorted(c["name"] for c in cases.json()["items"]) == ["login", "payments", "signoff", "smoke"]

    runs = client.get("/api/v1/executions", params={"limit": 200}, headers=admin).json()["items"]
    assert {r["status"] for r in runs} == STATUSES and len(runs) == 22
    nightly = next(r for r in runs if r["kind"] == "suite")
    assert nightly["gate"] is None and nightly["progress"] == {
        "total": 3,
        "done": 3,
        "by_status": {"FAILED": 1, "PASSED": 2},
    }
    failed = next(r for r in runs if r["run_id"] == "gh-4711")
    full = client.get(
        f"/api/v1/executions/{failed['id']}", params={"include": "steps,transitions"}, headers=admin
    )
    assert full.status_code == 200, full.text
    assert [s["status"] for s in full.json()["steps"]] == ["passed", "failed"]
    assert [t["to_status"] for t in full.json()["transitions"]] == ["QUEUED", "RUNNING", "FAILED"]

    sharded = next(r for r in runs if r["shard_plan"] is not None)
    steps = client.get(f"/api/v1/executions/{sharded['id']}/steps", headers=admin)
    assert steps.status_code == 200, steps.text
    assert len(steps.json()) == 4 and {s["execution_id"] for s in steps.json()} != {sharded["id"]}

    quarantined = client.get("/api/v1/tests", params={"quarantined": "true"}, headers=admin)
    assert quarantined.status_code == 200, quarantined.text
    [flaky] = quarantined.json()["items"]
    history = client.get(f"/api/v1/tests/{flaky['id']}/history", headers=admin)
    assert history.status_code == 200 and len(history.json()["items"]) == 1, history.text

    suites = client.get("/api/v1/test-suites", headers=admin).json()["items"]
    assert sorted(s["name"] for s in suites) == ["nightly", "release"]
    schedules = client.get("/api/v1/schedules", headers=admin).json()["items"]
    assert sorted((s["name"], s["enabled"]) for s in schedules) == [
        ("legacy hourly", False),
        ("nightly", True),
    ]
    secrets = client.get("/api/v1/secrets", headers=admin)
    assert sorted(s["name"] for s in secrets.json()["items"]) == ["deploy-token", "registry-password"]


def test_upgraded_test_secrets_still_decrypt(upgraded: Upgrade) -> None:
    """The secrets key is part of the backup: with the same key the worker reads them after the upgrade."""
    from anvil.settings import get_settings
    from db.secrets import box_for, decrypt

    with psycopg.connect(pg_url(DB)) as conn:
        stored = dict(conn.execute("SELECT name, value_encrypted FROM test_secrets").fetchall())
    box = box_for(get_settings())
    assert decrypt(box, name="deploy-token", token=stored["deploy-token"]) == "s3cr3t-deploy"
