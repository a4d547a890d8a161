"""Cancel, retry, expiry and schedules with real `anvil api`, `anvil worker` and `anvil beat` processes."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import AttemptCounter, Stack, StackFactory

# Short timings so recovery paths take seconds.
FAST = {
    "ANVIL_LEASE_TTL_S": "4",
    "ANVIL_HEARTBEAT_S": "1",
    "ANVIL_TIMEOUT_GRACE_S": "2",
    "ANVIL_REPUBLISH_AFTER_S": "2",
}


def processes_with(marker: bytes) -> list[int]:
    """Pids whose environment carries ``marker`` (a test step's own env var)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def create_case(stack: Stack, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {
        "name": f"e2e-{uuid.uuid4().hex[:8]}",
        "kind": "generic",
        "spec": {"workspace": "demo", "steps": steps},
        "timeout_s": 60,
        **extra,
    }
    response = stack.client.post("/api/v1/test-cases", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_cancelling_a_running_test_stops_it_within_seconds(make_stack: StackFactory) -> None:
    stack = make_stack(env=FAST)
    marker = f"E2E_CANCEL_{uuid.uuid4().hex}"
    case = create_case(
        stack,
        [
            {"name": "start", "run": ["true"]},
            {"name": "wait", "run": ["sleep", "30"], "env": {"E2E_MARKER": marker}},
            {"name": "after", "run": ["true"]},
        ],
    )
    execution_id = stack.submit(case["id"])["id"]
    stack.wait_status(execution_id, {"RUNNING"})
    wait_for(lambda: processes_with(marker.encode()), timeout=30, what="the sleep step started")

    asked = time.monotonic()
    response = stack.client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "RUNNING" and response.json()["cancel_requested_at"]
    stack.wait_status(execution_id, {"CANCELLED"}, timeout=10)
    assert time.monotonic() - asked < 3.5, "the worker should stop the test within about two seconds"

    final = stack.get(execution_id, include="steps,transitions")
    assert [(s["name"], s["status"]) for s in final["steps"]] == [
        ("start", "passed"),
        ("wait", "cancelled"),
        ("after", "skipped"),
    ]
    assert final["transitions"][-1]["from_status"] == "RUNNING"
    assert final["attempt"] == 1
    assert processes_with(marker.encode()) == []  # the test's process group is gone


def test_a_test_failing_once_passes_on_its_retry_and_is_flaky(
    make_stack: StackFactory, attempts: AttemptCounter
) -> None:
    stack = make_stack(env=FAST)
    case = create_case(
        stack,
        [attempts.fail_first_step("shaky", name="shaky")],
        retry_policy={"max_retries": 2, "retry_on": ["FAILED"], "backoff_base_s": 0.5, "jitter": 0},
    )
    first_id = stack.submit(case["id"])["id"]
    first = stack.wait_status(first_id, {"RETRYING"})
    transitions = stack.get(first_id, include="transitions")["transitions"]
    assert [(t["from_status"], t["to_status"]) for t in transitions][-2:] == [
        ("RUNNING", "FAILED"),
        ("FAILED", "RETRYING"),
    ]
    (retry,) = stack.client.get("/api/v1/executions", params={"parent_execution_id": first_id}).json()[
        "items"
    ]
    assert (retry["trigger_kind"], retry["retry_index"]) == ("retry", 1)
    assert retry["correlation_id"] == first["correlation_id"]
    done = stack.wait_final(retry["id"])
    assert (done["status"], done["flaky"]) == ("PASSED", True)
    assert "second" in done["steps"][0]["output"]
    assert [t["to_status"] for t in done["transitions"]] == ["SCHEDULED", "QUEUED", "RUNNING", "PASSED"]


def test_an_execution_no_worker_starts_in_time_expires_and_never_runs(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0, env=FAST)
    case = create_case(stack, [{"run": ["true"]}])
    response = stack.client.post(
        "/api/v1/executions/case", json={"test_case_id": case["id"], "expires_in_s": 1}
    )
    assert response.status_code == 201, response.text
    execution_id = response.json()["id"]
    skipped = stack.wait_status(execution_id, {"SKIPPED"}, timeout=15)
    assert skipped["error"] == "expired before it started"
    transitions = stack.get(execution_id, include="transitions")["transitions"]
    assert (transitions[-1]["to_status"], transitions[-1]["reason"]) == ("SKIPPED", "expired")

    # A worker that turns up later receives the message, finds it expired, and drops it.
    stack.start_worker()
    queue = stack.redis()
    try:
        wait_for(lambda: queue.llen("normal") == 0, timeout=30, what="the worker consumed the message")
    finally:
        queue.close()
    final = stack.get(execution_id, include="steps")
    assert (final["status"], final["attempt"], final["steps"]) == ("SKIPPED", 0, [])


def anvil(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_API") and k != "ANVIL_TOKEN"}
    env["ANVIL_API_URL"] = stack.api_url
    env["ANVIL_TOKEN"] = str(stack.client.headers["Authorization"]).removeprefix("Bearer ")
    return subprocess.run(anvil_argv(*args), env=env, capture_output=True, text=True, timeout=90)


def test_schedules_from_the_cli_and_a_triggered_run(make_stack: StackFactory) -> None:
    stack = make_stack(env=FAST)
    case = create_case(stack, [{"name": "hello", "run": ["echo", "scheduled hello"]}], name="nightly-case")

    created = anvil(
        stack, "schedules", "create", "--name", "nightly", "--cron", "0 2 * * *", "--tz", "Europe/Berlin",
        "--case", "nightly-case", "--priority", "high", "--overlap", "skip",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    schedule_id, name = created.stdout.split()[:2]
    assert name == "nightly" and "next:" in created.stdout
    schedule = stack.client.get(f"/api/v1/schedules/{schedule_id}").json()
    assert (schedule["test_case_id"], schedule["priority"], schedule["timezone"]) == (
        case["id"],
        "HIGH",
        "Europe/Berlin",
    )

    listed = anvil(stack, "schedules", "list")
    assert listed.returncode == 0, listed.stderr
    assert schedule_id in listed.stdout and "0 2 * * *" in listed.stdout and "enabled" in listed.stdout

    paused = anvil(stack, "schedules", "pause", "nightly")
    assert paused.returncode == 0, paused.stderr
    assert stack.client.get(f"/api/v1/schedules/{schedule_id}").json()["enabled"] is False
    assert "paused" in anvil(stack, "schedules", "list").stdout
    assert anvil(stack, "schedules", "resume", schedule_id).returncode == 0
    assert stack.client.get(f"/api/v1/schedules/{schedule_id}").json()["enabled"] is True

    bad = anvil(stack, "schedules", "create", "--name", "bad", "--cron", "0 25 * * *", "--case", case["id"])
    assert bad.returncode == 2 and "cron" in bad.stderr

    # An every-minute schedule run now through the API's trigger: the worker runs the case.
    minute = stack.client.post(
        "/api/v1/schedules", json={"name": "every-minute", "cron": "* * * * *", "test_case_id": case["id"]}
    )
    assert minute.status_code == 201, minute.text
    triggered = stack.client.post(f"/api/v1/schedules/{minute.json()['id']}/trigger")
    assert triggered.status_code == 201, triggered.text
    run = stack.wait_final(triggered.json()["id"])
    assert (run["status"], run["trigger_kind"], run["schedule_id"]) == (
        "PASSED",
        "scheduled",
        minute.json()["id"],
    )
    assert "scheduled hello" in run["steps"][0]["output"]

    # The CLI's trigger, then a person's retry of the finished run and a refused cancel.
    fired = anvil(stack, "schedules", "trigger", "nightly")
    assert fired.returncode == 0, fired.stderr
    nightly_run = stack.wait_final(fired.stdout.strip())
    assert (nightly_run["status"], nightly_run["priority"]) == ("PASSED", "HIGH")
    again = anvil(stack, "retry", nightly_run["id"])
    assert again.returncode == 0, again.stderr
    rerun = stack.wait_final(again.stdout.strip())
    assert (rerun["status"], rerun["trigger_kind"], rerun["parent_execution_id"]) == (
        "PASSED",
        "retry",
        nightly_run["id"],
    )
    refused = anvil(stack, "cancel", rerun["id"])
    assert refused.returncode == 2 and "already finished" in refused.stderr
