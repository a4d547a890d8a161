"""pytest suites through real `anvil api`, `anvil worker` and `anvil beat`: one step per test, live.

The oracle is pytest itself: the example workspace (examples/workspaces/pytest-demo) is also run
directly with ``--junitxml``, and Anvil's steps and counts must agree with that report.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped
from sqlalchemy.orm import Session

from tests.e2e.conftest import Stack, StackFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspaces" / "pytest-demo"
SLOW = "tests/test_slow.py::test_slow_computation"
EXPECTED = {
    "tests/test_basics.py::test_addition": "passed",
    "tests/test_basics.py::test_greeting": "passed",
    "tests/test_basics.py::test_failing_assertion": "failed",
    "tests/test_basics.py::test_skipped": "skipped",
    "tests/test_basics.py::test_skipped_at_runtime": "skipped",
    "tests/test_basics.py::test_known_bug": "xfailed",
    "tests/test_basics.py::test_fixed_bug": "xpassed",
    "tests/test_fixtures.py::test_with_broken_database": "error",
    "tests/test_fixtures.py::test_leaves_a_mess": "error",
    "tests/test_fixtures.py::test_with_working_fixture": "passed",
    "tests/test_fixtures.py::test_fails_and_leaves_a_mess": "error",
    "tests/test_params.py::test_square[2-4]": "passed",
    "tests/test_params.py::test_square[3-9]": "passed",
    "tests/test_params.py::test_square[4-15]": "failed",
    SLOW: "passed",
}


def add_workspace(stack: Stack, name: str, files: dict[str, str] | None = None) -> Path:
    """A workspace under the stack's root: a copy of the example, or the given files."""
    target = stack.root / "workspaces" / name
    if files is None:
        shutil.copytree(EXAMPLE, target)
    for path, body in (files or {}).items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(textwrap.dedent(body).lstrip())
    return target


def pytest_case(stack: Stack, workspace: str, args: list[str], *, timeout_s: int = 120) -> str:
    body = {
        "name": f"pytest-{uuid.uuid4().hex[:8]}",
        "kind": "pytest",
        "spec": {"workspace": workspace, "args": args},
        "timeout_s": timeout_s,
    }
    response = stack.client.post("/api/v1/test-cases", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def submit(stack: Stack, workspace: str, args: list[str], **options: Any) -> str:
    return str(stack.submit(pytest_case(stack, workspace, args, **options))["id"])


def steps_of(stack: Stack, execution_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(f"/api/v1/executions/{execution_id}/steps")
    assert response.status_code == 200, response.text
    return list(response.json())


def run_directly(workspace: Path, junit: Path, *args: str) -> subprocess.Popen[bytes]:
    """pytest on its own, as a developer would run it (no Anvil plugin), writing a JUnit report."""
    env = {"PATH": os.environ["PATH"], "HOME": str(junit.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    return subprocess.Popen(argv, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def junit_outcome(results: list[str]) -> str:
    """The one step status that pytest's JUnit entries for one node id stand for.

    JUnit has one <testcase> per node id, except a test that fails in its call and errors in its
    teardown: pytest writes two (a <failure>, then an <error>). Anvil records one step per node id
    whose status is error whenever setup or teardown failed. So: any <error> -> error; else
    <failure> -> failed; else <skipped type="pytest.xfail"> -> xfailed; else <skipped> -> skipped;
    else passed. JUnit cannot tell an xpassed test from a passed one, so xpassed compares as passed.
    """
    for entry, status in (
        ("error", "error"),
        ("failure", "failed"),
        ("xfail", "xfailed"),
        ("skip", "skipped"),
    ):
        if entry in results:
            return status
    return "passed"


def read_junit(path: Path) -> tuple[dict[tuple[str, str], str], dict[str, int]]:
    """Per node id outcome (see junit_outcome) and the suite's own counts."""
    entries: dict[tuple[str, str], list[str]] = defaultdict(list)
    totals = Counter[str]()
    for suite in JUnitXml.fromfile(str(path)):
        totals.update(tests=suite.tests, failures=suite.failures, errors=suite.errors, skipped=suite.skipped)
        for case in suite:
            results = []
            for result in case.result:
                if isinstance(result, Error):
                    results.append("error")
                elif isinstance(result, Failure):
                    results.append("failure")
                elif isinstance(result, Skipped):
                    results.append("xfail" if result.type == "pytest.xfail" else "skip")
            entries[(case.classname, case.name)] += results or ["pass"]
    return {key: junit_outcome(results) for key, results in entries.items()}, dict(totals)


def junit_key(nodeid: str) -> tuple[str, str]:
    """pytest's JUnit (classname, name) of a node id: "a/test_b.py::C::test_d" -> ("a.test_b.C", "test_d")."""
    names = nodeid.split("::")
    names[0] = names[0].replace("/", ".").removesuffix(".py")
    return ".".join(names[:-1]), names[-1]


def test_example_gives_the_same_outcomes_as_pytest_and_traces_live(stack: Stack, tmp_path: Path) -> None:
    add_workspace(stack, "pytest-demo")
    direct_copy = tmp_path / "direct" / "pytest-demo"
    shutil.copytree(EXAMPLE, direct_copy)
    junit = tmp_path / "direct" / "junit.xml"
    direct = run_directly(direct_copy, junit)
    execution_id = submit(stack, "pytest-demo", [])

    # Live: while the slow test (the last one) still runs, every earlier test is already a step.
    seen_live_at: datetime | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = stack.get(execution_id)["status"]
        names = [s["name"] for s in steps_of(stack, execution_id)]
        if status == "RUNNING" and set(names) == set(EXPECTED) - {SLOW}:
            seen_live_at = datetime.now().astimezone()
            break
        assert status in ("QUEUED", "RUNNING"), f"finished before the slow test was seen running: {status}"
        time.sleep(0.05)
    assert seen_live_at is not None, "never saw the earlier steps while the slow test was running"

    execution = stack.wait_final(execution_id, timeout=90)
    assert direct.wait(timeout=90) == 1

    steps = execution["steps"]
    statuses = {s["name"]: s["status"] for s in steps}
    assert statuses == EXPECTED
    assert [s["seq"] for s in steps] == list(range(1, len(EXPECTED) + 1))
    slow = next(s for s in steps if s["name"] == SLOW)
    # The slow test finished after it was observed still running, and it took its 3 seconds.
    assert datetime.fromisoformat(slow["finished_at"]) > seen_live_at
    assert slow["duration_s"] >= 2.9
    assert slow["details"]["markers"] == ["slow"]

    # Per node id, pytest's own JUnit report agrees with the steps.
    per_node, junit_counts = read_junit(junit)
    assert {junit_key(node) for node in statuses} == set(per_node)
    compared = {node: "passed" if status == "xpassed" else status for node, status in statuses.items()}
    assert {node: per_node[junit_key(node)] for node in statuses} == compared

    # The counts: pytest's own ("pytest") equal JUnit's; the steps count each test once.
    assert execution["status"] == "FAILED"
    assert execution["error"] == "pytest: 3 failed, 7 passed, 2 skipped, 1 xfailed, 1 xpassed, 3 errors"
    summary = execution["summary"]
    own = summary["pytest"]["counts"]
    assert summary["pytest"]["exit_code"] == 1
    assert own["error"] == junit_counts["errors"]
    assert own["failed"] == junit_counts["failures"]
    assert own["skipped"] + own["xfailed"] == junit_counts["skipped"]
    # JUnit writes one <testcase> per node id, two for a test that failed and errored in teardown.
    both = sum(1 for s in steps if {"failed", "error"} <= set(s["details"]["categories"]))
    assert both == 1
    assert sum(own.values()) - both == junit_counts["tests"]
    assert {k: v for k, v in summary.items() if k != "pytest"} == {"total": 15, **Counter(EXPECTED.values())}

    # What a user reads on the steps: failure text, captured output, skip and xfail reasons.
    by_name = {s["name"]: s for s in steps}
    failing = by_name["tests/test_basics.py::test_failing_assertion"]
    assert "assert actual == expected" in failing["error"]
    assert "comparing the API answer" in failing["output"]
    assert by_name["tests/test_basics.py::test_skipped"]["error"] == "Skipped: the feature is not built yet"
    assert by_name["tests/test_basics.py::test_known_bug"]["details"]["xfail_reason"] == "known bug: rounding"
    assert "refused the connection" in by_name["tests/test_fixtures.py::test_with_broken_database"]["error"]
    double = by_name["tests/test_fixtures.py::test_fails_and_leaves_a_mess"]
    assert double["details"]["phases"] == {"setup": "passed", "call": "failed", "teardown": "error"}
    assert "permanent" in double["error"] and "was left behind" in double["error"]
    # Nothing was written into the workspace (no cache, no bytecode).
    written = {p.name for p in (stack.root / "workspaces" / "pytest-demo").rglob("*")}
    assert not written & {".pytest_cache", "__pycache__"}


def test_selection_empty_runs_and_collection_errors(make_stack: StackFactory) -> None:
    stack = make_stack(concurrency=4)
    add_workspace(stack, "pytest-demo")
    add_workspace(
        stack,
        "broken-suite",
        {
            "tests/test_fine.py": "def test_fine():\n    pass\n",
            "tests/test_typo.py": "def test_typo(:\n    pass\n",
        },
    )
    add_workspace(
        stack,
        "env-check",
        {
            "test_env.py": """
                import os

                def test_sees_only_a_scrubbed_environment():
                    mine = {"ANVIL_EXECUTION_ID", "ANVIL_ATTEMPT"}
                    assert sorted(k for k in os.environ if k.startswith("ANVIL_")) == sorted(mine)
                    assert not [v for v in os.environ.values() if "postgresql" in v or "redis://" in v]
            """
        },
    )
    scrubbed = submit(stack, "env-check", [])
    by_k = submit(stack, "pytest-demo", ["-k", "square or addition"])
    by_mark = submit(stack, "pytest-demo", ["tests/test_basics.py", "-m", "smoke"])
    nothing = submit(stack, "pytest-demo", ["-k", "no_test_has_this_name"])
    broken = submit(stack, "broken-suite", [])
    missing = submit(stack, "no-such-workspace", [])
    usage = submit(stack, "pytest-demo", ["tests/test_nothing_here.py"])

    selected = stack.wait_final(by_k)
    assert {s["name"]: s["status"] for s in selected["steps"]} == {
        "tests/test_basics.py::test_addition": "passed",
        "tests/test_params.py::test_square[2-4]": "passed",
        "tests/test_params.py::test_square[3-9]": "passed",
        "tests/test_params.py::test_square[4-15]": "failed",
    }
    assert selected["status"] == "FAILED"

    smoke = stack.wait_final(by_mark)
    assert smoke["status"] == "PASSED", smoke
    assert smoke["error"] is None
    assert [s["name"] for s in smoke["steps"]] == [
        "tests/test_basics.py::test_addition",
        "tests/test_basics.py::test_greeting",
    ]
    assert smoke["summary"] == {
        "total": 2,
        "passed": 2,
        "pytest": {"exit_code": 0, "counts": {"passed": 2}},
    }

    empty = stack.wait_final(nothing)
    assert (empty["status"], empty["error"], empty["steps"]) == ("ERROR", "no tests collected", [])

    collection = stack.wait_final(broken)
    assert collection["status"] == "ERROR"
    assert collection["error"].startswith("pytest exit code 2 (interrupted)")
    assert "1 error during collection" in collection["error"]
    (step,) = collection["steps"]
    assert (step["name"], step["status"], step["details"]["kind"]) == (
        "tests/test_typo.py",
        "error",
        "collection",
    )
    assert "SyntaxError" in step["error"]

    gone = stack.wait_final(missing)
    assert gone["status"] == "ERROR"
    assert "workspace 'no-such-workspace' does not exist" in gone["error"]

    env = stack.wait_final(scrubbed)
    assert env["status"] == "PASSED", env["steps"]

    not_found = stack.wait_final(usage)
    assert not_found["status"] == "ERROR"
    assert "(usage error)" in not_found["error"]
    assert "file or directory not found: tests/test_nothing_here.py" in not_found["error"]


# The test tells the host it started over loopback (the sandbox lets nothing it writes reach the
# host), then outlives any reasonable wait. PORT is filled in per test.
SLEEPER = """
import os
import socket
import time

def test_sleeps():
    with socket.create_connection(("127.0.0.1", PORT)) as conn:
        conn.sendall(os.environ["ANVIL_EXECUTION_ID"].encode())
    time.sleep(120)
"""


class StartSignals:
    """A loopback listener the sleeping tests report to; the host then finds their processes by the
    execution id in their environment (inside its sandbox a test has other pids)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(1)
        self.port = self.server.getsockname()[1]
        self.seen: set[str] = set()

    def wait_pids(self, execution_id: str) -> list[int]:
        deadline = time.monotonic() + 60
        while execution_id not in self.seen:
            assert time.monotonic() < deadline, f"the test of {execution_id} never started"
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                self.seen.add(conn.recv(100).decode())
        marker = f"ANVIL_EXECUTION_ID={execution_id}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        assert pids, f"no process of {execution_id} found"
        return pids


def wait_gone(pid: int, *, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"test process {pid} still alive after {timeout}s"
        time.sleep(0.05)


def test_timeout_and_cancel_kill_the_test_process(stack: Stack) -> None:
    from db.cancel import cancel

    signals = StartSignals()
    add_workspace(stack, "sleepy", {"tests/test_sleep.py": SLEEPER.replace("PORT", str(signals.port))})
    # Long enough for pytest to start in the sandbox on a loaded machine (CI runs three test
    # workers on two cores): a timeout before the test began would kill nothing to look at.
    timed = submit(stack, "sleepy", [], timeout_s=20)
    cancelled = submit(stack, "sleepy", [], timeout_s=120)

    timed_pids = signals.wait_pids(timed)
    execution = stack.wait_final(timed, timeout=60)
    assert execution["status"] == "TIMEOUT"
    assert execution["error"] == (
        "test timeout after 20s: process group killed while running tests/test_sleep.py::test_sleeps"
    )
    assert [(s["name"], s["status"]) for s in execution["steps"]] == [
        ("tests/test_sleep.py::test_sleeps", "timeout")
    ]
    for pid in timed_pids:
        wait_gone(pid)

    # Cancelled while its test runs (what the API's cancel does): the worker kills pytest at once and
    # records the test that was running as cancelled.
    cancelled_pids = signals.wait_pids(cancelled)
    with Session(stack.engine) as session, session.begin():
        cancel(session, uuid.UUID(cancelled), actor="user:e2e-admin")
    for pid in cancelled_pids:
        wait_gone(pid)
    final = stack.wait_final(cancelled, timeout=30)
    assert final["status"] == "CANCELLED"
    assert [(s["name"], s["status"]) for s in final["steps"]] == [
        ("tests/test_sleep.py::test_sleeps", "cancelled")
    ]
    assert [t["to_status"] for t in final["transitions"]] == ["QUEUED", "RUNNING", "CANCELLED"]


def test_workspace_listing_and_bad_specs(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0, beat=False)
    add_workspace(stack, "pytest-demo")
    add_workspace(stack, "configured", {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"})
    add_workspace(stack, "suffix-style", {"checks/login_test.py": "def test_login():\n    pass\n"})
    add_workspace(stack, "bdd-only", {"features/login.feature": "Feature: Login\n"})
    add_workspace(stack, "both", {"features/a.feature": "Feature: A\n", "conftest.py": ""})
    add_workspace(stack, "docs", {"README.md": "# not tests\n", "node_modules/x/test_y.py": ""})
    (stack.root / "workspaces" / ".hidden").mkdir()

    response = stack.client.get("/api/v1/workspaces")
    assert response.status_code == 200, response.text
    assert {w["name"]: w["kinds"] for w in response.json()["items"]} == {
        "both": ["pytest", "bdd"],
        "bdd-only": ["bdd"],
        "configured": ["pytest"],
        "demo": [],
        "docs": [],
        "pytest-demo": ["pytest"],
        "suffix-style": ["pytest"],
    }
    assert stack.client.get("/api/v1/workspaces", headers={"Authorization": ""}).status_code == 401

    before = stack.client.get("/api/v1/test-cases").json()["items"]
    bad = [
        ({"workspace": "pytest-demo", "args": [], "steps": [{"run": ["true"]}]}, "body.spec.steps"),
        ({"args": []}, "body.spec.workspace"),
        ({"workspace": "pytest-demo", "args": [], "markers": "smoke"}, "body.spec.markers"),
        ({"workspace": "pytest-demo", "args": ["-p", "no:workers.pytest_plugin"]}, "body.spec.args.1"),
        ({"workspace": "pytest-demo", "args": ["../demo"]}, "body.spec.args.0"),
        ({"workspace": "../pytest-demo", "args": []}, "body.spec.workspace"),
    ]
    for spec, field in bad:
        body = {"name": "bad", "kind": "pytest", "spec": spec}
        response = stack.client.post("/api/v1/test-cases", json=body)
        assert response.status_code == 422, (spec, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["field"] == field, (spec, problem)
        assert field in problem["detail"]
    assert stack.client.get("/api/v1/test-cases").json()["items"] == before
