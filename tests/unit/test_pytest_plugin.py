"""The pytest plugin's JSON lines, and how the runner turns them into steps and one outcome.

pytest runs here as a real subprocess on small generated test files; no database, no sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from workers.runners.base import RunContext
from workers.runners.pytest_runner import StepRecorder, _last_lines, pytest_argv
from workers.sandbox import ProcessResult

TESTS = {
    "test_mixed.py": """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup boom")

        @pytest.fixture
        def messy():
            yield
            raise RuntimeError("teardown boom")

        @pytest.mark.smoke
        def test_pass():
            print("hello from the test\\x00")

        def test_fail():
            assert 1 == 2

        def test_setup_error(broken):
            pass

        def test_teardown_error(messy):
            pass

        def test_fail_and_teardown_error(messy):
            assert False, "call failed"

        @pytest.mark.skip(reason="not today")
        def test_skip():
            pass

        @pytest.mark.xfail(reason="known", strict=True)
        def test_xfail():
            assert 0

        @pytest.mark.xfail(reason="fixed")
        def test_xpass():
            pass

        @pytest.mark.xfail(reason="strict", strict=True)
        def test_xpass_strict():
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            assert n == 1
    """,
    "test_syntax.py": "def test_broken(:\n    pass\n",
    "test_module_skip.py": """
        import pytest
        pytest.skip("whole module skipped", allow_module_level=True)
    """,
    "pytest.ini": "[pytest]\nmarkers =\n    smoke: quick\n",
}


def write_tests(folder: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        (folder / name).write_text(textwrap.dedent(body).lstrip())


def run_pytest(folder: Path, *args: str, text_cap: int = 65536) -> tuple[int, list[dict[str, Any]]]:
    report = folder.parent / f"{folder.name}-report.jsonl"
    argv = pytest_argv(report=report, text_cap=text_cap, args=list(args))
    env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(folder.parent)}
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    lines = report.read_text().splitlines() if report.exists() else []
    return done.returncode, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("mixed")
    write_tests(folder, TESTS)
    return run_pytest(folder, "--continue-on-collection-errors")


def by_node(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["nodeid"]: e for e in events if e["event"] in ("item", "collect")}


def test_one_line_per_item_with_pytest_s_verdict(mixed: tuple[int, list[dict[str, Any]]]) -> None:
    code, events = mixed
    assert code == 1
    statuses = {node: e["status"] for node, e in by_node(events).items()}
    assert statuses == {
        "test_module_skip.py": "skipped",
        "test_syntax.py": "error",
        "test_mixed.py::test_pass": "passed",
        "test_mixed.py::test_fail": "failed",
        "test_mixed.py::test_setup_error": "error",
        "test_mixed.py::test_teardown_error": "error",
        "test_mixed.py::test_fail_and_teardown_error": "error",
        "test_mixed.py::test_skip": "skipped",
        "test_mixed.py::test_xfail": "xfailed",
        "test_mixed.py::test_xpass": "xpassed",
        "test_mixed.py::test_xpass_strict": "failed",
        "test_mixed.py::test_param[1]": "passed",
        "test_mixed.py::test_param[2]": "failed",
    }
    assert events[0]["event"] == "session"
    assert events[-1] == {**events[-1], "event": "finish", "exitstatus": 1}


def test_phases_categories_and_texts(mixed: tuple[int, list[dict[str, Any]]]) -> None:
    nodes = by_node(mixed[1])
    both = nodes["test_mixed.py::test_fail_and_teardown_error"]
    # pytest counts this item twice ("1 failed, 1 error"); the step keeps both phases and texts.
    assert both["categories"] == ["failed", "error"]
    assert both["phases"] == {"setup": "passed", "call": "failed", "teardown": "error"}
    assert "call failed" in both["error"] and "teardown boom" in both["error"]

    teardown = nodes["test_mixed.py::test_teardown_error"]
    assert teardown["categories"] == ["passed", "error"]
    assert teardown["message"] == "teardown: RuntimeError: teardown boom"

    assert "setup boom" in nodes["test_mixed.py::test_setup_error"]["error"]
    assert "assert 1 == 2" in nodes["test_mixed.py::test_fail"]["error"]
    assert "SyntaxError" in nodes["test_syntax.py"]["error"]
    assert nodes["test_module_skip.py"]["error"] == "Skipped: whole module skipped"
    assert nodes["test_mixed.py::test_skip"]["error"] == "Skipped: not today"
    assert nodes["test_mixed.py::test_xfail"]["xfail_reason"] == "known"
    assert "XPASS(strict)" in nodes["test_mixed.py::test_xpass_strict"]["error"]

    passed = nodes["test_mixed.py::test_pass"]
    assert passed["error"] is None
    assert "hello from the test\n" in passed["output"]  # without the NUL PostgreSQL cannot store
    assert passed["markers"] == ["smoke"]
    assert passed["location"][0] == "test_mixed.py"
    assert passed["started"] <= passed["finished"] and passed["duration"] >= 0


def test_failure_text_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    write_tests(
        tmp_path,
        {
            "test_big.py": """
                def test_big():
                    print("x" * 50_000)
                    raise ValueError("y" * 50_000)
            """
        },
    )
    code, events = run_pytest(tmp_path, text_cap=2000)
    assert code == 1
    (item,) = [e for e in events if e["event"] == "item"]
    assert item["error_truncated"] and item["output_truncated"]
    assert len(item["error"]) < 2200 and len(item["output"]) < 2200
    assert "characters truncated" in item["error"]
    assert "test_big" in item["error"][:300]  # the head: where the failure starts
    assert "ValueError" in item["error"][-300:]  # the tail: what failed


def test_plugin_is_inert_without_a_report_path(tmp_path: Path) -> None:
    write_tests(tmp_path, {"test_ok.py": "def test_ok():\n    pass\n"})
    argv = [sys.executable, "-m", "pytest", "-p", "workers.pytest_plugin", "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "test_ok.py"]


# --- the runner's side: reading the lines as they appear ---------------------------------------------


def context(emitted: list[StepRecord], *, accept: bool = True) -> RunContext:
    def emit(step: StepRecord) -> bool:
        if accept:
            emitted.append(step)
        return accept

    return RunContext(
        execution_id=uuid.uuid4(),
        attempt=1,
        snapshot={"name": "t", "kind": "generic", "spec": {}, "timeout_s": 60},
        params={},
        workspace_root=Path("/nonexistent"),
        output_cap=65536,
        stop=threading.Event(),
        emit=emit,
    )


ITEM = {
    "event": "item",
    "nodeid": "t.py::test_a",
    "status": "failed",
    "categories": ["failed"],
    "phases": {"setup": "passed", "call": "failed", "teardown": "passed"},
    "started": 1700000000.0,
    "finished": 1700000001.5,
    "duration": 1.25,
    "error": "assert 1 == 2",
    "output": None,
    "location": ["t.py", 0, "test_a"],
    "markers": [],
}


def result(code: int | None, output: str = "", *, timed_out: bool = False) -> ProcessResult:
    return ProcessResult(code, output, False, timed_out, False, 1.0)


def test_a_line_is_recorded_only_once_complete(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text('{"event": "session"}\n')
    emitted: list[StepRecord] = []
    recorder = StepRecorder(context(emitted), report)
    line = json.dumps(ITEM) + "\n"
    with report.open("a") as out:
        out.write(line[:40])
    recorder.read()
    assert emitted == []
    with report.open("a") as out:
        out.write(line[40:] + "not json\n")
    recorder.read()
    recorder.read()
    (step,) = emitted
    assert (step.seq, step.name, step.status, step.error) == (1, "t.py::test_a", "failed", "assert 1 == 2")
    assert step.duration_s == 1.25
    assert step.finished_at is not None and step.started_at is not None
    assert (step.finished_at - step.started_at).total_seconds() == 1.5
    outcome = recorder.outcome(result(1))
    assert outcome.status is Status.FAILED and outcome.error == "pytest: 1 failed"
    assert outcome.summary == {"total": 1, "failed": 1, "pytest": {"exit_code": 1, "counts": {"failed": 1}}}


def test_a_refused_step_stops_the_run(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps(ITEM) + "\n")
    ctx = context([], accept=False)
    recorder = StepRecorder(ctx, report)
    recorder.read()
    assert ctx.stop.is_set() and ctx.stop_reason == ["the attempt no longer owns the execution"]
    assert recorder.outcome(result(1)).error == "attempt lost its lease"


def test_the_test_running_at_the_timeout_gets_a_timeout_step(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    start = {"event": "start", "nodeid": "t.py::test_slow", "at": 1700000000.0}
    report.write_text('{"event": "session"}\n' + json.dumps(start) + "\n")
    emitted: list[StepRecord] = []
    recorder = StepRecorder(context(emitted), report)
    recorder.read()
    outcome = recorder.outcome(result(None, timed_out=True))
    assert outcome.status is Status.TIMEOUT
    assert outcome.error is not None and "t.py::test_slow" in outcome.error
    assert [(s.name, s.status) for s in emitted] == [("t.py::test_slow", "timeout")]


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (0, Status.PASSED, None),
        (5, Status.ERROR, "no tests collected"),
        (2, Status.ERROR, "pytest exit code 2 (interrupted): Interrupted: 1 error during collection"),
        (3, Status.ERROR, "pytest exit code 3 (internal error): Interrupted: 1 error during collection"),
        (-9, Status.ERROR, "pytest was killed by SIGKILL: Interrupted: 1 error during collection"),
    ],
)
def test_exit_codes(tmp_path: Path, code: int, status: Status, error: str | None) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text('{"event": "session"}\n')
    recorder = StepRecorder(context([]), report)
    recorder.read()
    output = "\n!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!\n"
    outcome = recorder.outcome(result(code, output))
    assert (outcome.status, outcome.error) == (status, error)


def test_a_run_the_plugin_did_not_see_is_an_error(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    report.touch()
    recorder = StepRecorder(context([]), report)
    recorder.read()
    outcome = recorder.outcome(result(0, "1 passed in 0.01s"))
    assert outcome.status is Status.ERROR
    assert outcome.error is not None and "the Anvil plugin recorded nothing" in outcome.error


def test_usage_errors_are_quoted_from_pytest() -> None:
    output = "ERROR: file or directory not found: tests/nope.py\n\n=== no tests ran in 0.01s ===\n"
    assert _last_lines(output) == "ERROR: file or directory not found: tests/nope.py\nno tests ran in 0.01s"


def test_a_record_that_cannot_be_read_stops_the_run(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text('{"event": "item", "nodeid": "t.py::test_a"}\n')
    ctx = context([])
    recorder = StepRecorder(ctx, report)
    recorder.read()
    assert ctx.stop.is_set()
    outcome = recorder.outcome(ProcessResult(None, "", False, False, True, 1.0))
    assert outcome.status is Status.ERROR
    assert outcome.error == "recording the results failed: KeyError: 'categories'"
