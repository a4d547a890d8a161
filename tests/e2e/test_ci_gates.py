"""`anvil submit suite … --wait --gate` in CI, against real `anvil api`, `anvil worker` and `anvil beat`
running a real pytest workspace: the exit code follows the quality gate (not the suite's status),
GitHub Actions gets ``::error file=…,line=…::`` annotations and a job summary, GitLab CI a
collapsible section and the JUnit report, and `anvil status` shows the verdict."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import Stack
from tests.e2e.test_pytest_runner import add_workspace

CALC = """\
def test_adds():
    assert 1 + 1 == 2


def test_subtracts():
    assert 3 - 1 == 1, "subtraction is broken"


def test_multiplies():
    assert 2 * 3 == 6
"""
FAILING = "tests/test_calc.py::test_subtracts"
TITLE = "tests/test_calc.py%3A%3Atest_subtracts failed"  # ":" escaped in a workflow command property
CI_VARIABLES = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITLAB_CI", "ANVIL_API_URL", "ANVIL_TOKEN")


def anvil(stack: Stack, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command as a CI job runs it: the stack's URL and token, and the CI system's variables."""
    base = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    token = str(stack.client.headers["Authorization"]).removeprefix("Bearer ")
    full = {**base, "ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": token, **env}
    # Bytes, decoded here: text mode would turn the carriage returns of GitLab's markers into newlines.
    done = subprocess.run(anvil_argv(*args), env=full, capture_output=True, timeout=180)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def gated_suite(stack: Stack, gate: dict[str, object]) -> str:
    add_workspace(stack, "calc", {"tests/test_calc.py": CALC})
    case = stack.client.post(
        "/api/v1/test-cases",
        json={"name": f"calc-{uuid.uuid4().hex[:6]}", "kind": "pytest", "timeout_s": 120,
              "spec": {"workspace": "calc", "args": ["tests"]}},
    )  # fmt: skip
    assert case.status_code == 201, case.text
    name = f"calc-suite-{uuid.uuid4().hex[:6]}"
    suite = stack.client.post(
        "/api/v1/test-suites", json={"name": name, "case_ids": [case.json()["id"]], "gate": gate}
    )
    assert suite.status_code == 201, suite.text
    return name


def test_github_actions_gets_annotations_a_summary_and_the_gates_exit_code(
    stack: Stack, tmp_path: Path
) -> None:
    suite = gated_suite(stack, {"max_failures": 0, "min_tests": 3})
    summary = tmp_path / "step-summary.md"
    summary.write_text("## earlier step\n")
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}

    failed = anvil(stack, "submit", "suite", suite, "--wait", "--gate", "--branch", "main", env=github)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    # The failed test, at its file and line (the def of test_subtracts is line 5), with its message.
    annotations = [line for line in failed.stdout.splitlines() if line.startswith("::error")]
    assert any(
        line.startswith(f"::error file=tests/test_calc.py,line=5,title={TITLE}::")
        and "subtraction is broken" in line
        for line in annotations
    ), failed.stdout
    assert "::error title=Anvil quality gate failed::failed: max_failures 1 (limit 0)" in annotations
    assert len(annotations) == 2  # the two passing tests are not annotated
    assert "quality gate failed: max_failures 1 (limit 0)" in failed.stdout
    suite_id = failed.stdout.split("suite execution ", 1)[1].split()[0]

    written = summary.read_text()
    assert written.startswith("## earlier step\n")  # appended, not overwritten
    assert f"## ❌ Anvil suite `{suite}`: FAILED" in written
    assert f"[{suite_id}]({stack.api_url}/ui/executions/{suite_id})" in written
    assert "| tests | 2 passed, 1 failed |" in written
    assert "| quality gate | ❌ failed (max_failures, min_tests) |" in written
    assert "| ↳ max_failures | max_failures 1 (limit 0): 1 tests failed; at most 0 may fail |" in written
    assert f"| `{FAILING}` | failed | tests/test_calc.py:5 |" in written

    shown = anvil(stack, "status", suite_id, env={})
    assert shown.returncode == 0, shown.stderr
    assert "quality gate" in shown.stdout and "failed: max_failures 1 (limit 0)" in shown.stdout

    # A gate that allows one failure passes: --gate exits 0 although the suite FAILED.
    allowed = anvil(
        stack, "submit", "suite", suite, "--gate-rules", '{"max_failures": 1}', "--branch", "main",
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "quality gate passed (max_failures)" in allowed.stdout
    second_id = allowed.stdout.split("suite execution ", 1)[1].split()[0]
    assert stack.get(second_id)["status"] == "FAILED"
    assert stack.get(second_id)["gate"]["status"] == "passed"
    # Without --gate the same run's status decides.
    plain = anvil(stack, "submit", "suite", suite, "--wait", "--branch", "main", env={})
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "::error" not in plain.stdout  # not in a CI system: no workflow commands


def test_gitlab_gets_a_collapsed_section_and_the_junit_report(stack: Stack, tmp_path: Path) -> None:
    suite = gated_suite(stack, {"no_new_failures": True})
    report = tmp_path / "anvil-junit.xml"

    first = anvil(
        stack, "submit", "suite", suite, "--gate", "--junit", str(report), "--branch", "main",
        env={"GITLAB_CI": "true"},
    )  # fmt: skip

    assert first.returncode == 1, first.stdout + first.stderr  # no previous run: the failure is new
    lines = first.stdout.split("\n")  # not splitlines: a section marker holds a carriage return
    start = next(i for i, line in enumerate(lines) if "section_start:" in line)
    assert lines[start].startswith("\x1b[0Ksection_start:")
    assert "anvil_failed_tests[collapsed=true]" in lines[start]
    assert lines[start].endswith("\r\x1b[0KAnvil: 1 failed tests")
    assert FAILING in lines[start + 1] and "(tests/test_calc.py:5)" in lines[start + 1]
    assert any(line.startswith("\x1b[0Ksection_end:") for line in lines[start:])
    assert f"JUnit report for GitLab: {report}" in first.stdout
    assert "<testsuite" in report.read_text()
    assert "::error" not in first.stdout

    # The same failure again is not new: the gate passes on the second run of the branch.
    again = anvil(stack, "submit", "suite", suite, "--gate", "--branch", "main", env={"GITLAB_CI": "true"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "hint: add --junit anvil-junit.xml" in again.stdout
