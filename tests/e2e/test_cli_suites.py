"""`anvil suites …` and `anvil submit suite …` as a user runs them, against a real stack; and the
README's tour (`anvil dev`, then the example cases and suites) in a fresh directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

from junitparser import JUnitXml

from anvil.cli.processes import anvil_argv
from anvil.migrate import ROOT
from tests.e2e.conftest import AttemptCounter, Stack
from tests.e2e.test_cli import anvil, token_of, unboxed
from tests.e2e.test_dev import Dev

# "[2/3] PASSED  name": a member finished, with the suite's progress after it.
MEMBER_LINE = re.compile(r"^  \[(\d+)/(\d+)\] (\w+)  (\S+)$", re.MULTILINE)


def at(stack: Stack) -> dict[str, str]:
    return {"api_url": stack.api_url, "token": token_of(stack)}


def suite_file(tmp_path: Path, **definition: Any) -> Path:
    path = tmp_path / f"suite-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(definition))
    return path


def flaky_case(stack: Stack, name: str, attempts: AttemptCounter) -> dict[str, Any]:
    """Fails its first run and passes its retry (a loopback counter remembers)."""
    body = {
        "name": name,
        "kind": "generic",
        "spec": {
            "workspace": "demo",
            "steps": [
                attempts.fail_first_step(name)
            ],
        },
        "retry_policy": {"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.2},
    }
    response = stack.client.post("/api/v1/test-cases", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def junit_counts(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """Per testsuite (one per member): tests, failures, errors, skipped."""
    return {s.name: (s.tests, s.failures, s.errors, s.skipped) for s in JUnitXml.fromfile(str(path))}


def test_a_suite_file_of_case_names_runs_to_passed_with_progress_and_a_report(
    stack: Stack, tmp_path: Path
) -> None:
    two_steps = [
        {"name": "one", "run": ["true"]},
        {"name": "two", "run": ["echo", "ok"], "expect_output": "ok"},
    ]
    cases = [stack.create_case(two_steps, name=name) for name in ("alpha", "beta", "gamma")]
    definition = suite_file(
        tmp_path, name="smoke", cases=["alpha", "beta", cases[2]["id"]], default_priority="HIGH"
    )

    created = anvil("suites", "create", "--file", str(definition), **at(stack))
    assert created.returncode == 0, created.stderr
    suite_id, name = created.stdout.split()
    assert name == "smoke"
    stored = stack.client.get(f"/api/v1/test-suites/{suite_id}").json()
    assert stored["case_ids"] == [c["id"] for c in cases] and stored["default_priority"] == "HIGH"
    listed = anvil("suites", "list", **at(stack))
    assert listed.returncode == 0 and re.search(rf"{suite_id}\s+smoke\s+3\s", listed.stdout), listed.stdout

    report = tmp_path / "report.xml"
    waited = anvil(
        "submit", "suite", "smoke", "--wait", "--junit", str(report), "--run-id", "ci-9", **at(stack)
    )

    assert waited.returncode == 0, waited.stdout + waited.stderr
    head = re.match(r"suite execution (\S+) \(smoke, 3 members\)", waited.stdout)
    assert head, waited.stdout
    members = MEMBER_LINE.findall(waited.stdout)
    assert [(done, total) for done, total, _, _ in members] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert sorted((status, member) for _, _, status, member in members) == [
        ("PASSED", "alpha"),
        ("PASSED", "beta"),
        ("PASSED", "gamma"),
    ]
    assert re.search(r"^PASSED in [\d.]+s \(3 members: 3 PASSED\)$", waited.stdout, re.MULTILINE)
    assert (
        waited.stdout.splitlines()[-1] == f"JUnit report {report} (6 tests, 0 failures, 0 errors, 0 skipped)"
    )
    assert junit_counts(report) == {"alpha": (2, 0, 0, 0), "beta": (2, 0, 0, 0), "gamma": (2, 0, 0, 0)}
    execution = stack.get(head.group(1))
    assert (execution["status"], execution["priority"], execution["run_id"]) == ("PASSED", "HIGH", "ci-9")
    assert execution["progress"] == {"total": 3, "done": 3, "by_status": {"PASSED": 3}}
    shown = anvil("status", head.group(1), **at(stack))
    assert re.search(rf"suite\s+smoke \({suite_id}\)", shown.stdout), shown.stdout
    assert "3 of 3 members done (3 PASSED)" in shown.stdout

    # Without --wait: the id only; the same idempotency key gives the same suite execution.
    first = anvil("submit", "suite", suite_id, "--idempotency-key", "s-1", "--priority", "low", **at(stack))
    again = anvil("submit", "suite", "smoke", "--idempotency-key", "s-1", "--priority", "low", **at(stack))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert uuid.UUID(first.stdout.strip()) == uuid.UUID(again.stdout.strip())
    assert stack.wait_final(first.stdout.strip())["priority"] == "LOW"


def test_a_failing_suite_exits_1_names_its_failing_members_and_writes_the_report(
    stack: Stack, tmp_path: Path, attempts: AttemptCounter
) -> None:
    stack.create_case([{"name": "fine", "run": ["true"]}], name="fine")
    broken_steps = [
        {"name": "ok", "run": ["true"]},
        {"name": "breaks", "run": ["sh", "-c", "echo boom; exit 3"]},
        {"name": "never", "run": ["true"]},
    ]
    stack.create_case(broken_steps, name="broken")
    flaky_case(stack, "wobbly", attempts)
    definition = suite_file(tmp_path, name="mixed-results", cases=["fine", "broken", "wobbly"])
    assert anvil("suites", "create", "-q", "--file", str(definition), **at(stack)).returncode == 0

    report = tmp_path / "report.xml"
    waited = anvil("submit", "suite", "mixed-results", "--wait", "--junit", str(report), **at(stack))

    out = waited.stdout
    assert waited.returncode == 1, out + waited.stderr
    members = MEMBER_LINE.findall(out)
    # The flaky member's first failure is not shown as a result: its retry is the same member.
    assert [done for done, _, _, _ in members] == ["1", "2", "3"], out
    assert sorted((status, member) for _, _, status, member in members) == [
        ("FAILED", "broken"),
        ("PASSED", "fine"),
        ("PASSED", "wobbly"),
    ]
    assert re.search(r"^  RETRYING  wobbly ", out, re.MULTILINE), out
    assert re.search(r"^FAILED in [\d.]+s \(3 members: 1 FAILED, 2 PASSED\)$", out, re.MULTILINE), out
    failing = out[out.index("failing members:") :].splitlines()
    assert re.match(r"  FAILED  broken  \S+$", failing[1]) and "exit code 3, expected 0" in failing[2], out
    assert "wobbly" not in "\n".join(failing)
    assert junit_counts(report) == {"fine": (1, 0, 0, 0), "broken": (3, 1, 0, 1), "wobbly": (1, 0, 0, 0)}
    suite_execution = stack.get(out.split()[2])
    assert suite_execution["status"] == "FAILED"
    assert suite_execution["progress"] == {"total": 3, "done": 3, "by_status": {"FAILED": 1, "PASSED": 2}}


def test_suite_usage_and_api_errors_exit_2(stack: Stack, tmp_path: Path) -> None:
    stack.create_case([{"name": "fine", "run": ["true"]}], name="known")

    unknown = suite_file(tmp_path, name="s", cases=["known", "nope", "also-nope"])
    refused = anvil("suites", "create", "--file", str(unknown), **at(stack))
    assert refused.returncode == 2 and "no test case named 'nope', 'also-nope'" in refused.stderr

    invalid = suite_file(tmp_path, name="s", cases=["known"], fail_fast="sometimes")
    refused = anvil("suites", "create", "--file", str(invalid), **at(stack))
    assert refused.returncode == 2 and "body.fail_fast" in refused.stderr

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    refused = anvil("suites", "create", "--file", str(not_json), **at(stack))
    assert refused.returncode == 2 and "is not valid JSON" in refused.stderr

    missing = anvil("submit", "suite", "no-such-suite", "--wait", **at(stack))
    assert missing.returncode == 2 and "no test suite with id or name 'no-such-suite'" in missing.stderr
    gone = anvil("submit", "suite", str(uuid.uuid4()), **at(stack))
    assert gone.returncode == 2 and "body.test_suite_id" in gone.stderr
    nowhere = anvil("submit", "suite", "x", "--junit", str(tmp_path / "no" / "r.xml"), **at(stack))
    assert nowhere.returncode == 2 and "does not exist" in unboxed(nowhere.stderr)


def test_the_readme_tour_on_anvil_dev(tmp_path: Path) -> None:
    """`anvil dev` registers the examples; the tour's commands then work as the README says."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    dev = Dev(tmp_path, "--no-flower")
    try:
        dev.wait_up()

        def tour(*args: str) -> subprocess.CompletedProcess[str]:
            # As in a second terminal of that directory: the token comes from .anvil/token.
            env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
            env["ANVIL_API_URL"] = dev.api_url
            return subprocess.run(
                anvil_argv(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
            )

        cases = tour("cases", "list")
        assert cases.returncode == 0, cases.stderr
        for name in ("hello", "pytest-demo", "pytest-demo-smoke", "bdd-demo", "bdd-demo-smoke"):
            assert re.search(rf"\s{name}\s", cases.stdout), (name, cases.stdout)
        suites = tour("suites", "list")
        assert re.search(r"\snightly\s+3\s", suites.stdout) and re.search(
            r"\severything\s+5\s", suites.stdout
        )

        nightly = tour("submit", "suite", "nightly", "--wait", "--junit", "report.xml")
        assert nightly.returncode == 0, nightly.stdout + nightly.stderr
        assert set(junit_counts(tmp_path / "report.xml")) == {"hello", "pytest-demo-smoke", "bdd-demo-smoke"}

        bdd = tour("submit", "case", "bdd-demo-smoke", "--wait", "--junit", "out.xml")
        assert bdd.returncode == 0, bdd.stdout + bdd.stderr
        assert "step 1 passed" in bdd.stdout
        [(tests, failures, errors, _)] = junit_counts(tmp_path / "out.xml").values()
        assert tests > 0 and failures == errors == 0
    finally:
        if dev.proc.poll() is None:
            dev.proc.send_signal(signal.SIGINT)
            try:
                dev.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        dev.stop()
    assert "examples (7 new): cases hello, bdd-demo-smoke" in dev.output(), dev.output()[-5000:]
