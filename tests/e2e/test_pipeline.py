"""Submit → queue → claim → run → trace, through real `anvil api`, `anvil worker` and `anvil beat`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack


def transitions(execution: dict) -> list[tuple[str | None, str]]:
    return [(t["from_status"], t["to_status"]) for t in execution["transitions"]]


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment contains ``marker``."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def test_passing_case_records_steps_and_transitions(stack: Stack) -> None:
    execution = stack.run_case(
        [
            {"name": "where", "run": ["pwd"]},
            {"name": "both streams", "run": ["sh", "-c", "echo out; echo err >&2"], "expect_output": "err"},
            {"name": "last", "run": ["printf", "three"]},
        ]
    )

    assert execution["status"] == "PASSED", execution
    assert execution["error"] is None
    assert execution["attempt"] == 1
    assert execution["summary"] == {"total": 3, "passed": 3}
    assert execution["started_at"] and execution["finished_at"] and execution["duration_s"] >= 0
    steps = execution["steps"]
    assert [(s["seq"], s["name"], s["status"]) for s in steps] == [
        (1, "where", "passed"),
        (2, "both streams", "passed"),
        (3, "last", "passed"),
    ]
    # Steps run in the workspace directory, and stdout and stderr are both captured.
    assert steps[0]["output"].strip() == str(stack.root / "workspaces" / "demo")
    assert steps[1]["output"].split() == ["out", "err"]
    assert steps[2]["output"] == "three"
    assert all(s["attempt"] == 1 and s["details"]["exit_code"] == 0 for s in steps)
    assert transitions(execution) == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "PASSED")]
    # The separate endpoints agree with the embedded view.
    assert stack.client.get(f"/api/v1/executions/{execution['id']}/steps").json() == steps


def test_failing_step_fails_the_test_and_skips_the_rest(stack: Stack) -> None:
    execution = stack.run_case(
        [
            {"name": "fine", "run": ["true"]},
            {"name": "breaks", "run": ["sh", "-c", "echo boom; exit 1"]},
            {"name": "never", "run": ["touch", "never-ran"]},
        ]
    )

    assert execution["status"] == "FAILED", execution
    assert "step 2 (breaks)" in execution["error"]
    assert "exit code 1" in execution["error"]
    assert execution["summary"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1}
    assert [(s["name"], s["status"]) for s in execution["steps"]] == [
        ("fine", "passed"),
        ("breaks", "failed"),
        ("never", "skipped"),
    ]
    assert execution["steps"][1]["output"].strip() == "boom"
    assert not (stack.root / "workspaces" / "demo" / "never-ran").exists()
    assert transitions(execution)[-1] == ("RUNNING", "FAILED")


def test_output_mismatch_fails(stack: Stack) -> None:
    execution = stack.run_case([{"name": "greet", "run": ["echo", "hello"], "expect_output": "^goodbye$"}])

    assert execution["status"] == "FAILED", execution
    assert "does not match" in execution["error"]
    assert execution["steps"][0]["status"] == "failed"
    assert execution["steps"][0]["output"].strip() == "hello"


def test_step_timeout_kills_the_whole_process_group(stack: Stack) -> None:
    marker = f"E2E_MARKER_{uuid.uuid4().hex}"
    case = stack.create_case(
        [
            {
                "name": "hangs",
                "run": ["sh", "-c", "sleep 300 & sleep 300"],
                "timeout_s": 1,
                "env": {"E2E_MARKER": marker},
            },
            {"name": "after", "run": ["true"]},
        ]
    )
    execution_id = stack.submit(case["id"])["id"]

    # Both sleeps really start (so the check below can fail) ...
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:  # both sleeps (and perhaps sh)
        seen = marked_processes(marker) or seen
        if stack.get(execution_id)["status"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.02)
    assert len(seen) >= 2, f"the test's processes were never seen running: {seen}"

    execution = stack.wait_final(execution_id)
    assert execution["status"] == "TIMEOUT", execution
    assert "step timeout after 1s" in execution["error"]
    assert [s["status"] for s in execution["steps"]] == ["timeout", "skipped"]
    assert execution["steps"][0]["duration_s"] < 30
    # ... and none of them, not even the backgrounded one, outlives the step.
    assert marked_processes(marker) == []


@pytest.mark.parametrize("ending", ["timeout", "clean exit"])
def test_a_detached_process_dies_with_its_test(stack: Stack, ending: str) -> None:
    """`setsid` leaves the test's process group and session; the worker adopts it and kills it."""
    marker = f"E2E_MARKER_{uuid.uuid4().hex}"
    tail = "sleep 300" if ending == "timeout" else "sleep 0.5"
    case = stack.create_case(
        [{"name": "detaches", "run": ["sh", "-c", f"setsid sleep 301 & {tail}"], "timeout_s": 2,
          "env": {"E2E_MARKER": marker}}]
    )  # fmt: skip
    execution_id = stack.submit(case["id"])["id"]
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        seen = marked_processes(marker)
        if stack.get(execution_id)["status"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.02)
    assert seen, "the detached process was never seen running"

    execution = stack.wait_final(execution_id)
    assert execution["status"] == ("TIMEOUT" if ending == "timeout" else "PASSED"), execution
    assert marked_processes(marker) == []


def test_missing_workspace_is_an_error_with_the_reason(stack: Stack) -> None:
    execution = stack.run_case([{"run": ["true"]}], workspace="not-there")

    assert execution["status"] == "ERROR", execution
    assert "not-there" in execution["error"] and "does not exist" in execution["error"]
    assert execution["steps"] == []
    assert transitions(execution)[-1] == ("RUNNING", "ERROR")
