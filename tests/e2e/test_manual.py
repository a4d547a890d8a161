"""Manual tests over HTTP with real processes: hand-off to PAUSED, two testers, step results, completion."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
from sqlalchemy.orm import Session

from tests.e2e.conftest import Stack

STEPS = [
    {"action": "Open the login page", "expected": "The form is shown"},
    {"action": "Log in as alice", "expected": "The dashboard greets alice"},
    {"action": "Log out", "expected": "Back on the login page"},
]


def _user(stack: Stack, name: str, role: str) -> httpx.Client:
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.users import create_user

    with Session(stack.engine) as session, session.begin():
        user = create_user(session, username=name, password="pw", role=Role(role))
        token = issue_token(get_settings(), user_id=user.id, username=name, role=role)
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _manual_execution(stack: Stack, name: str, priority: str = "NORMAL") -> dict[str, Any]:
    body = {"name": name, "kind": "manual", "spec": {"instructions": "Use the staging site.", "steps": STEPS}}
    case = stack.client.post("/api/v1/test-cases", json=body)
    assert case.status_code == 201, case.text
    execution = stack.submit(case.json()["id"], priority=priority)
    return stack.wait_status(execution["id"], {"PAUSED"})


def _record(client: httpx.Client, execution_id: str, seq: int, status: str, **extra: Any) -> httpx.Response:
    return client.post(f"/api/v1/executions/{execution_id}/steps/{seq}", json={"status": status, **extra})


def test_manual_flow_with_two_testers(stack: Stack) -> None:
    alice, bob = _user(stack, "alice", "tester"), _user(stack, "bob", "tester")
    viewer = _user(stack, "vera", "viewer")
    low = _manual_execution(stack, "manual-low", "LOW")
    high = _manual_execution(stack, "manual-high", "HIGH")

    # The worker handed it over at once: steps recorded as not yet run, nothing holds a worker slot.
    steps = stack.client.get(f"/api/v1/executions/{high['id']}/steps").json()
    assert [s["status"] for s in steps] == ["not_run"] * 3
    assert [s["details"]["expected"] for s in steps] == [s["expected"] for s in STEPS]
    queue = alice.get("/api/v1/manual/queue").json()
    assert [e["id"] for e in queue] == [high["id"], low["id"]]  # highest priority first

    ex = high["id"]
    assert viewer.post(f"/api/v1/executions/{ex}/assign").status_code == 403
    assert alice.post(f"/api/v1/executions/{ex}/assign").status_code == 200
    conflict = bob.post(f"/api/v1/executions/{ex}/assign")
    assert conflict.status_code == 409 and "alice" in conflict.json()["detail"]
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert _record(bob, ex, 1, "passed").status_code == 403  # not the assignee

    out_of_order = _record(alice, ex, 2, "passed")
    assert out_of_order.status_code == 409 and "step 1" in out_of_order.json()["detail"]
    assert _record(alice, ex, 1, "failed", actual="blank page").status_code == 200
    assert _record(alice, ex, 1, "passed", comment="cache was stale").status_code == 200  # re-record
    assert _record(alice, ex, 2, "passed").status_code == 200
    assert _record(alice, ex, 4, "passed").status_code == 422
    assert _record(alice, ex, 3, "bogus").status_code == 422
    done = _record(alice, ex, 3, "passed", actual="login page")
    assert done.status_code == 200
    assert done.json()["execution"]["status"] == "PASSED"

    late = _record(alice, ex, 3, "failed")
    assert late.status_code == 409  # the execution completed
    # Every record is kept: step 1 was recorded twice, the step row holds the last one.
    history = stack.sql(
        "SELECT seq, status FROM manual_step_results WHERE execution_id = :e ORDER BY id", e=ex
    )
    assert [(r.seq, r.status) for r in history] == [
        (1, "failed"),
        (1, "passed"),
        (2, "passed"),
        (3, "passed"),
    ]
    final = stack.get(ex, include="steps,transitions")
    assert [s["status"] for s in final["steps"]] == ["passed", "passed", "passed"]
    assert [t["to_status"] for t in final["transitions"]] == ["QUEUED", "RUNNING", "PAUSED", "PASSED"]

    # Release and hand over: bob takes the low-priority one after alice gives it back.
    assert alice.post(f"/api/v1/executions/{low['id']}/assign").status_code == 200
    assert alice.delete(f"/api/v1/executions/{low['id']}/assign").status_code == 204
    assert bob.post(f"/api/v1/executions/{low['id']}/assign").status_code == 200
    assert _record(bob, low["id"], 1, "passed").status_code == 200
    assert _record(bob, low["id"], 2, "blocked", comment="no staging account").status_code == 200
    blocked = _record(bob, low["id"], 3, "skipped").json()["execution"]
    assert (blocked["status"], blocked["error"]) == ("ERROR", "blocked")


def test_a_failed_step_fails_the_test(stack: Stack) -> None:
    tester = _user(stack, "tess", "tester")
    ex = _manual_execution(stack, "manual-fail")["id"]
    assert tester.post(f"/api/v1/executions/{ex}/assign").status_code == 200
    for seq, status in ((1, "passed"), (2, "failed"), (3, "passed")):
        response = _record(tester, ex, seq, status)
        assert response.status_code == 200, response.text
    final = stack.get(ex)
    assert final["status"] == "FAILED" and "step 2" in final["error"]
    assert final["summary"] == {"total": 3, "passed": 2, "failed": 1}


def test_cli_manual_run_records_answers(stack: Stack) -> None:
    ex = _manual_execution(stack, "manual-cli")["id"]
    token = stack.client.headers["Authorization"].removeprefix("Bearer ")
    answers = "p\nform shown\n\nf\nerror 500\nticket 42\ns\n\n\n"
    result = subprocess.run(
        [sys.executable, "-m", "anvil.cli", "manual", "run", ex],
        input=answers,
        capture_output=True,
        text=True,
        timeout=60,
        env={**stack.env, "ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": token, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stdout + result.stderr  # a failed step: not PASSED
    assert "Log in as alice" in result.stdout and "The dashboard greets alice" in result.stdout
    steps = stack.client.get(f"/api/v1/executions/{ex}/steps").json()
    assert [s["status"] for s in steps] == ["passed", "failed", "skipped"]
    assert steps[1]["details"]["actual"] == "error 500" and steps[1]["error"] == "ticket 42"
    assert stack.get(ex)["status"] == "FAILED"
    queue = subprocess.run(
        [sys.executable, "-m", "anvil.cli", "manual", "queue"],
        capture_output=True, text=True, timeout=60,
        env={**stack.env, "ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": token, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert queue.returncode == 0 and "no manual tests are waiting" in queue.stdout
