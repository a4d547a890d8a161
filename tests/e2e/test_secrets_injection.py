"""Test secrets through real `anvil` processes: the value reaches the test that names it, and is
stored nowhere, neither in the secrets table (encrypted) nor in anything the test printed (***)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import Stack, StackFactory

PYTEST_FILE = '''
import os


def test_the_token_is_not_what_we_expected():
    print("the token is", os.environ["TOKEN"])
    assert os.environ["TOKEN"] == "something else"
'''


def _set_secret(stack: Stack, name: str, value: str) -> None:
    response = stack.client.put(f"/api/v1/secrets/{name}", json={"value": value})
    assert response.status_code == 201, response.text


def _rows_holding(stack: Stack, value: str) -> dict[str, int]:
    """Every table of the stack's database whose rows, as text, contain ``value``."""
    tables = [row[0] for row in stack.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert "test_secrets" in tables and "step_traces" in tables
    found = {}
    for table in tables:
        count = stack.sql(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE :p', p=f"%{value}%")[0][0]
        if count:
            found[table] = count
    return found


def test_a_secret_reaches_only_the_step_naming_it_and_is_stored_as_stars(stack: Stack) -> None:
    value = f"tok-{uuid.uuid4().hex}"
    _set_secret(stack, "deploy-token", value)
    token: dict[str, Any] = {"TOKEN": {"secret": "deploy-token"}}
    digest = hashlib.sha256(value.encode()).hexdigest()

    execution = stack.run_case(
        [
            {"name": "print", "run": ["sh", "-c", "echo token=$TOKEN"], "env": token},
            # The test gets exactly the value (checked by its hash, which is no secret).
            {"name": "exact", "run": ["sh", "-c", 'printf %s "$TOKEN" | sha256sum'], "env": token},
            {"name": "not named here", "run": ["sh", "-c", 'echo "other=${TOKEN:-unset}"']},
        ]
    )

    assert execution["status"] == "PASSED", execution
    steps = {s["name"]: s for s in execution["steps"]}
    assert steps["print"]["output"].strip() == "token=***"
    assert steps["exact"]["output"].split()[0] == digest
    assert steps["not named here"]["output"].strip() == "other=unset"
    # Nowhere in the database in plaintext: the secrets table holds it encrypted.
    assert stack.sql("SELECT count(*) FROM test_secrets WHERE name = 'deploy-token'")[0][0] == 1
    assert _rows_holding(stack, value) == {}
    assert value not in stack.log_tails(lines=100_000)


def test_a_pytest_run_gets_its_secret_and_its_failure_is_redacted(stack: Stack) -> None:
    value = f"tok-{uuid.uuid4().hex}"
    _set_secret(stack, "ci-key", value)
    workspace = stack.root / "workspaces" / "py-secrets"
    workspace.mkdir()
    (workspace / "test_token.py").write_text(PYTEST_FILE)
    spec = {"workspace": "py-secrets", "args": ["-q"], "env": {"TOKEN": {"secret": "ci-key"}}}
    case = stack.client.post(
        "/api/v1/test-cases",
        json={"name": "pytest with a secret", "kind": "pytest", "spec": spec, "timeout_s": 120},
    )
    assert case.status_code == 201, case.text

    execution = stack.wait_final(stack.submit(case.json()["id"])["id"], timeout=120)

    assert execution["status"] == "FAILED", execution
    (step,) = execution["steps"]
    assert step["status"] == "failed"
    # pytest's message shows the value (abbreviated, then in full in the diff): masked, every piece.
    assert "+ ***" in step["error"] and "== 'something else'" in step["error"], step["error"]
    assert "the token is ***" in (step["output"] or ""), step
    pieces = {value[i : i + 6] for i in range(len(value) - 5)}
    assert not [p for p in pieces if p in step["error"] + (step["output"] or "")], step
    assert _rows_holding(stack, value) == {}


def test_a_secret_deleted_after_submission_ends_the_run_in_error_naming_it(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0)
    _set_secret(stack, "deploy-token", "short-lived-value-123")
    case = stack.create_case(
        [{"run": ["sh", "-c", "echo $TOKEN"], "env": {"TOKEN": {"secret": "deploy-token"}}}]
    )
    execution_id = stack.submit(case["id"])["id"]
    # The queued execution keeps the version it was submitted with, which names the secret.
    plain = {"spec": {"workspace": "demo", "steps": [{"run": ["true"]}]}}
    assert stack.client.patch(f"/api/v1/test-cases/{case['id']}", json=plain).status_code == 200
    assert stack.client.delete("/api/v1/secrets/deploy-token").status_code == 204

    stack.start_worker()
    execution = stack.wait_final(execution_id)

    assert execution["status"] == "ERROR", execution
    assert "'deploy-token'" in execution["error"] and "no longer exist" in execution["error"]
    assert execution["steps"] == []


def _anvil(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANVIL_API_URL", "ANVIL_TOKEN")}
    env["ANVIL_API_URL"] = stack.api_url
    env["ANVIL_TOKEN"] = str(stack.client.headers["Authorization"]).removeprefix("Bearer ")
    return subprocess.run(anvil_argv(*args), env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_the_cli_sets_lists_and_deletes_secrets_without_showing_values(stack: Stack, tmp_path: Path) -> None:
    first, second = f"v1-{uuid.uuid4().hex}", f"v2-{uuid.uuid4().hex}"
    (tmp_path / "token.txt").write_text(first + "\n")

    created = _anvil(stack, "secrets", "set", "deploy-token", "--value-file", str(tmp_path / "token.txt"))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created test secret deploy-token"
    replaced = _anvil(stack, "secrets", "set", "deploy-token", stdin=second + "\n")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.strip() == "updated test secret deploy-token"
    # The value is never an argument (shell history, ps): a second argument is refused.
    assert _anvil(stack, "secrets", "set", "other", "plain-value").returncode == 2
    assert _anvil(stack, "secrets", "set", "bad name", stdin="x").returncode == 2
    assert _anvil(stack, "secrets", "set", "empty", stdin="\n").returncode == 2

    listed = _anvil(stack, "secrets", "list")
    assert listed.returncode == 0 and "deploy-token" in listed.stdout and "e2e-admin" in listed.stdout
    as_json = json.loads(_anvil(stack, "secrets", "list", "--json").stdout)
    assert [s["name"] for s in as_json] == ["deploy-token"] and "value" not in as_json[0]

    # The test gets the replaced value (its hash), one trailing newline dropped.
    token: dict[str, Any] = {"TOKEN": {"secret": "deploy-token"}}
    case = stack.create_case([{"run": ["sh", "-c", 'printf %s "$TOKEN" | sha256sum'], "env": token}])
    execution = stack.wait_final(stack.submit(case["id"])["id"])
    assert execution["steps"][0]["output"].split()[0] == hashlib.sha256(second.encode()).hexdigest()

    refused = _anvil(stack, "secrets", "delete", "deploy-token")
    assert refused.returncode == 2 and case["name"] in refused.stderr, refused.stderr
    assert stack.client.delete(f"/api/v1/test-cases/{case['id']}").status_code == 204
    deleted = _anvil(stack, "secrets", "delete", "deploy-token")
    assert deleted.returncode == 0 and deleted.stdout.strip() == "deleted test secret deploy-token"
    assert _anvil(stack, "secrets", "list").stdout.strip() == "no test secrets"
    everything = "".join(p.stdout + p.stderr for p in (created, replaced, listed, refused, deleted))
    assert first not in everything and second not in everything
