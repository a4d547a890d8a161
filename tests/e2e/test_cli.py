"""The `anvil` API-client commands against a real stack, run as a user runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from anvil.processes import anvil_argv
from tests.e2e.conftest import Stack, free_port


def anvil(
    *args: str, api_url: str, token: str | None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANVIL_API_URL", "ANVIL_TOKEN")}
    env["ANVIL_API_URL"] = api_url
    if token is not None:
        env["ANVIL_TOKEN"] = token
    return subprocess.run(anvil_argv(*args), env=env, capture_output=True, text=True, timeout=timeout)


def token_of(stack: Stack) -> str:
    return str(stack.client.headers["Authorization"]).removeprefix("Bearer ")


def case_file(tmp_path: Path, steps: list[dict], name: str | None = None) -> Path:
    path = tmp_path / f"case-{uuid.uuid4().hex[:6]}.json"
    definition = {
        "name": name or f"cli-{uuid.uuid4().hex[:8]}",
        "kind": "generic",
        "timeout_s": 60,
        "spec": {"workspace": "demo", "steps": steps},
    }
    path.write_text(json.dumps(definition))
    return path


def test_create_submit_wait_and_status_of_a_passing_case(stack: Stack, tmp_path: Path) -> None:
    token = token_of(stack)
    steps = [
        {"name": "greet", "run": ["echo", "hi there"], "expect_output": "hi"},
        {"name": "ok", "run": ["true"]},
    ]

    created = anvil("cases", "create", "--file", str(case_file(tmp_path, steps, "cli-pass")), **_at(stack))
    assert created.returncode == 0, created.stderr
    case_id, name = created.stdout.split()
    assert name == "cli-pass"
    assert stack.client.get(f"/api/v1/test-cases/{case_id}").json()["name"] == "cli-pass"

    listed = anvil("cases", "list", api_url=stack.api_url, token=token)
    assert listed.returncode == 0, listed.stderr
    assert case_id in listed.stdout and "cli-pass" in listed.stdout

    waited = anvil(
        "submit", "case", case_id, "--wait", "--priority", "high", "--run-id", "build-7", **_at(stack)
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr
    lines = waited.stdout.splitlines()
    execution_id = lines[0].split()[-1]
    assert "step 1 passed" in waited.stdout and "greet" in waited.stdout
    assert "step 2 passed" in waited.stdout
    assert lines[-1].startswith("PASSED")
    recorded = stack.get(execution_id)
    assert (recorded["status"], recorded["priority"], recorded["run_id"]) == ("PASSED", "HIGH", "build-7")

    shown = anvil("status", execution_id, **_at(stack))
    assert shown.returncode == 0, shown.stderr
    assert "PASSED" in shown.stdout and "cli-pass" in shown.stdout and "greet" in shown.stdout
    raw = anvil("status", execution_id, "--json", **_at(stack))
    assert json.loads(raw.stdout)["status"] == "PASSED"

    # Without --wait: just the id, and an idempotency key returns the same execution again.
    first = anvil("submit", "case", case_id, "--idempotency-key", "k-1", **_at(stack))
    again = anvil("submit", "case", "cli-pass", "--idempotency-key", "k-1", **_at(stack))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert uuid.UUID(first.stdout.strip()) == uuid.UUID(again.stdout.strip())
    assert stack.wait_final(first.stdout.strip())["status"] == "PASSED"


def test_failing_case_exits_1_and_api_errors_exit_2(stack: Stack, tmp_path: Path) -> None:
    steps = [
        {"name": "fine", "run": ["true"]},
        {"name": "breaks", "run": ["sh", "-c", "echo boom; exit 3"]},
        {"name": "never", "run": ["true"]},
    ]
    created = anvil("cases", "create", "-q", "--file", str(case_file(tmp_path, steps)), **_at(stack))
    case_id = created.stdout.strip()

    waited = anvil("submit", "case", case_id, "--wait", **_at(stack))
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "step 2 failed" in waited.stdout and "exit code 3, expected 0" in waited.stdout
    assert "boom" in waited.stdout  # the failing step's output is shown
    assert "step 3 skipped" in waited.stdout
    assert waited.stdout.splitlines()[-2].startswith("FAILED")
    execution_id = waited.stdout.splitlines()[0].split()[-1]
    assert "FAILED" in anvil("status", execution_id, **_at(stack)).stdout

    bad_token = anvil("cases", "list", api_url=stack.api_url, token="not-a-token")
    assert bad_token.returncode == 2
    assert "the access token is not valid" in bad_token.stderr

    bad_spec = case_file(tmp_path, [{"run": []}])
    refused = anvil("cases", "create", "--file", str(bad_spec), **_at(stack))
    assert refused.returncode == 2
    assert "body.spec.steps.0.run" in refused.stderr

    unknown = anvil("submit", "case", str(uuid.uuid4()), "--wait", **_at(stack))
    assert unknown.returncode == 2
    assert "does not exist" in unknown.stderr

    missing = anvil("status", str(uuid.uuid4()), **_at(stack))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_unreachable_api_exits_2_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = anvil("submit", "case", str(uuid.uuid4()), "--wait", api_url=url, token="t")
    assert result.returncode == 2
    assert f"cannot reach the Anvil API at {url}" in result.stderr
    assert "ANVIL_API_URL" in result.stderr

    result = anvil("cases", "create", "--file", str(tmp_path / "absent.json"), api_url=url, token="t")
    assert result.returncode == 2 and "cannot read" in result.stderr


def _at(stack: Stack) -> dict[str, str]:
    return {"api_url": stack.api_url, "token": token_of(stack)}
