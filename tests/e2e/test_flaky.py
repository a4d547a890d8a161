"""Flaky detection end to end: a pytest case run three times on one revision through real `anvil api`,
`anvil worker` and `anvil beat`, one of its tests failing on the second run only; then
`anvil stats flaky-tests --json` (the CLI, as a user runs it) names that test, the revision, and the
executions that passed and failed."""

from __future__ import annotations

import json

from tests.e2e.conftest import Stack
from tests.e2e.test_cli import anvil, token_of
from tests.e2e.test_pytest_runner import add_workspace, pytest_case

REVISION = "4f2c9e1d"
FLAG = "fail-next-run"
TESTS = {
    "tests/test_shop.py": f"""
        from pathlib import Path

        def test_steady():
            assert 1 + 1 == 2

        def test_wobbly():
            # The sandbox sees the workspace read-only: the flag is set from outside, between runs.
            assert not (Path(__file__).parent.parent / "{FLAG}").exists()
    """
}


def test_a_test_failing_on_one_of_three_runs_of_a_revision_is_listed_with_its_evidence(stack: Stack) -> None:
    workspace = add_workspace(stack, "shop", TESTS)
    case_id = pytest_case(stack, "shop", ["tests"])
    executions = []
    for run, fail in enumerate((False, True, False)):
        (workspace / FLAG).unlink(missing_ok=True)
        if fail:
            (workspace / FLAG).write_text("the second run fails\n")
        response = stack.client.post(
            "/api/v1/executions/case", json={"test_case_id": case_id, "revision": REVISION, "branch": "main"}
        )
        assert response.status_code == 201, response.text
        finished = stack.wait_final(response.json()["id"], timeout=90)
        assert finished["status"] == ("FAILED" if fail else "PASSED"), (run, finished["error"])
        executions.append(finished["id"])

    shown = anvil("stats", "flaky-tests", "--json", api_url=stack.api_url, token=token_of(stack))
    assert shown.returncode == 0, shown.stderr
    [item] = json.loads(shown.stdout)["items"]  # test_steady never failed
    assert item["key"] == "tests/test_shop.py::test_wobbly"
    assert (item["test_case_id"], item["runs"], item["failures"]) == (case_id, 3, 1)
    [evidence] = item["evidence"]
    assert (evidence["kind"], evidence["revision"], evidence["branch"]) == ("same_revision", REVISION, "main")
    assert [(e["execution_id"], e["status"]) for e in evidence["executions"]] == [
        (executions[0], "passed"),
        (executions[1], "failed"),
        (executions[2], "passed"),
    ]

    # The table names the same: the test, the evidence, the executions.
    table = anvil("stats", "flaky-tests", "--case", case_id, api_url=stack.api_url, token=token_of(stack))
    assert table.returncode == 0, table.stderr
    assert "tests/test_shop.py::test_wobbly" in table.stdout and "test_steady" not in table.stdout
    assert f"passed and failed on revision {REVISION}" in table.stdout
    assert all(execution_id in table.stdout for execution_id in executions)

    # The same runs through `anvil history show` (the case, then the test by its key) and `anvil stats show`.
    at = {"api_url": stack.api_url, "token": token_of(stack)}
    case_view = anvil("history", "show", case_id, **at)
    assert case_view.returncode == 0, case_view.stderr
    wobbly = next(line for line in case_view.stdout.splitlines() if "test_wobbly" in line)
    assert "✓✗✓" in wobbly and "1/3" in wobbly
    test_view = anvil("history", "show", "tests/test_shop.py::test_wobbly", "--json", **at)
    assert test_view.returncode == 0, test_view.stderr
    history = json.loads(test_view.stdout)["history"]
    assert [(r["execution_id"], r["status"], r["revision"]) for r in history] == [
        (executions[2], "passed", REVISION),
        (executions[1], "failed", REVISION),
        (executions[0], "passed", REVISION),
    ]
    figures = json.loads(anvil("stats", "show", "--case", case_id, "--json", **at).stdout)
    assert (figures["runs"], figures["tests"], figures["failed"], figures["flaky_tests"]) == (3, 2, 1, 1)
