"""What `anvil submit … --wait` prints for CI systems: which system runs it, workflow commands with
their escaping, the job summary, GitLab's sections, and the exit code --gate decides."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.cli.ci import (
    FailedTest,
    _location,
    ci_system,
    github_annotations,
    github_summary,
    gitlab_output,
    gitlab_section,
)
from anvil.cli.gates import gate_exit_code, gate_summary

FAILED_GATE: dict[str, Any] = {
    "status": "failed",
    # In JSONB's key order, not the order rules are shown in.
    "rules": {"min_tests": 3, "max_failures": 0},
    "measured": {"tests": 3, "passed": 2, "failed": 1, "errors": 0, "skipped": 1, "quarantined": 0,
                 "pass_rate": 66.66, "duration_s": 8.0},
    "failed_rules": [{"rule": "max_failures", "measured": 1, "limit": 0,
                      "message": "1 tests failed; at most 0 may fail"}],
}  # fmt: skip
TEST = FailedTest(
    "tests/test_a.py::test_b[x,y]", "failed", "assert 100% == 1\nnext line", "e-2", "tests/test_a.py", 12
)


@pytest.mark.parametrize(
    ("env", "system"),
    [
        ({"GITHUB_ACTIONS": "true"}, "github"),
        ({"GITLAB_CI": "true"}, "gitlab"),
        ({"GITHUB_ACTIONS": "false"}, None),
        ({"CI": "true"}, None),
        ({}, None),
    ],
)
def test_the_ci_system_is_found_by_its_variable(env: dict[str, str], system: str | None) -> None:
    assert ci_system(env) == system


@pytest.mark.parametrize(
    ("location", "found"),
    [
        (["tests/test_a.py", 11, "test_b"], ("tests/test_a.py", 12)),  # pytest's line is 0-based
        (["tests/test_a.py", None, "test_b"], ("tests/test_a.py", None)),
        ("features/pay.feature:7", ("features/pay.feature", 7)),  # behave's step location
        ("feature_text:7", (None, None)),
        (None, (None, None)),
    ],
)
def test_locations_become_a_file_and_a_1_based_line(location: Any, found: tuple[Any, Any]) -> None:
    assert _location(location) == found


def test_annotations_escape_workflow_command_syntax() -> None:
    lines = github_annotations([TEST, FailedTest("checkout", "ERROR", "worker lost", "e-3")], FAILED_GATE)
    assert lines == [
        "::error file=tests/test_a.py,line=12,title=tests/test_a.py%3A%3Atest_b[x%2Cy] failed::"
        "assert 100%25 == 1%0Anext line",
        "::error title=checkout ERROR::worker lost",
        "::error title=Anvil quality gate failed::failed: max_failures 1 (limit 0)",
    ]
    assert github_annotations([TEST], {**FAILED_GATE, "status": "passed"}) == github_annotations([TEST], None)


def test_the_job_summary_has_the_result_counts_gate_and_failed_tests() -> None:
    final = {
        "id": "e-1", "kind": "suite", "test_case_name": "nightly", "status": "FAILED", "duration_s": 8.04,
        "branch": "main", "progress": {"total": 2, "done": 2, "by_status": {"PASSED": 1, "FAILED": 1}},
    }  # fmt: skip
    text = github_summary(final, FAILED_GATE, [TEST], ui_url="http://anvil:8000")
    assert text.splitlines()[0] == "## ❌ Anvil suite `nightly`: FAILED in 8.0s"
    assert "Execution [e-1](http://anvil:8000/ui/executions/e-1) · branch `main`" in text
    assert "| members | 2: 1 PASSED, 1 FAILED |" in text
    assert "| tests | 2 passed, 1 failed, 1 skipped |" in text
    assert "| pass rate | 66.66% |" in text
    assert "| quality gate | ❌ failed (max_failures, min_tests) |" in text
    assert "| ↳ max_failures | max_failures 1 (limit 0): 1 tests failed; at most 0 may fail |" in text
    row = "| `tests/test_a.py::test_b[x,y]` | failed | tests/test_a.py:12 |"
    assert f"{row} [e-2](http://anvil:8000/ui/executions/e-2) |" in text


def test_gitlab_gets_a_collapsed_section_and_the_junit_hint() -> None:
    section = gitlab_section("anvil_failed_tests", "Anvil: 1 failed tests", ["  x"], now=1700000000)
    assert section == [
        "\x1b[0Ksection_start:1700000000:anvil_failed_tests[collapsed=true]\r\x1b[0KAnvil: 1 failed tests",
        "  x",
        "\x1b[0Ksection_end:1700000000:anvil_failed_tests\r\x1b[0K",
    ]
    lines = gitlab_output(FAILED_GATE, [TEST], None)
    assert any("tests/test_a.py::test_b[x,y]  (tests/test_a.py:12)" in line for line in lines)
    assert "Anvil quality gate failed: max_failures 1 (limit 0)" in lines
    assert lines[-1].startswith("hint: add --junit anvil-junit.xml")


@pytest.mark.parametrize(
    ("verdict", "status", "code"),
    [
        ({"status": "passed"}, "FAILED", 0),  # the gate decides, not the status
        ({"status": "failed"}, "PASSED", 1),
        (None, "PASSED", 0),  # no verdict: the status decides
        (None, "CANCELLED", 1),
    ],
)
def test_with_gate_the_verdict_decides_the_exit_code(verdict: Any, status: str, code: int) -> None:
    assert gate_exit_code(verdict, status) == code


def test_the_gate_in_one_line() -> None:
    assert gate_summary(None) is None
    assert gate_summary({**FAILED_GATE, "status": "passed"}) == "passed (max_failures, min_tests)"
    rate = {"rule": "min_pass_rate", "measured": 99.99, "limit": 100, "message": "…"}
    assert gate_summary({**FAILED_GATE, "failed_rules": [rate]}) == "failed: min_pass_rate 99.99 (limit 100)"
