"""What the runners make of a selection: pytest's arguments (run for real, as a subprocess, with the
plugin) and behave's name patterns. No database, no sockets."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from anvil.domain.states import Status
from anvil.domain.steps import StepRecord
from workers.runners import bdd
from workers.runners.base import RunContext
from workers.runners.bdd import behave_argv, selected_patterns
from workers.runners.pytest_runner import options_only, pytest_argv, selected_args

ROOT = Path(__file__).resolve().parents[2]
BDD_DEMO = ROOT / "examples" / "workspaces"


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["tests", "-q"], ["-q"]),
        (["-k", "slow and not db", "tests/a.py", "-m", "smoke"], ["-k", "slow and not db", "-m", "smoke"]),
        (["--tb=short", "tests", "--maxfail", "2", "x.py::t"], ["--tb=short", "--maxfail", "2"]),
        (["-x", "tests"], ["-x"]),
    ],
)
def test_a_selection_keeps_the_options_and_drops_the_paths(args: list[str], kept: list[str]) -> None:
    assert options_only(args) == kept


def test_only_the_selected_tests_run_and_stale_ones_are_ignored(tmp_path: Path) -> None:
    workspace, private = tmp_path / "ws", tmp_path / "private"
    private.mkdir()
    files = {
        "tests/pay/test_pay.py": "def test_a(): pass\ndef test_b(): assert 0\n",
        "tests/shop/test_shop.py": "import sys\nsys.exit('this file must not be collected')\n",
        "tests/test_p.py": "import pytest\n@pytest.mark.parametrize('n', [1, 2])\ndef test_p(n): pass\n",
    }
    for path, body in files.items():
        (workspace / path).parent.mkdir(parents=True, exist_ok=True)
        (workspace / path).write_text(textwrap.dedent(body))
    selected = [
        "tests/pay/test_pay.py::test_b",
        "tests/pay/test_pay.py::test_gone",  # renamed since: pytest would refuse it as an argument
        "tests/test_p.py::test_p[2]",
        "tests/deleted.py::test_x",
    ]
    args = selected_args(workspace, private, selected, ["tests", "-q"])
    assert args is not None and "tests" not in args and args[0] == "-q"
    assert (private / "args.txt").read_text().splitlines() == ["tests/pay/test_pay.py", "tests/test_p.py"]
    report = private / "report.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        pytest_argv(report=report, text_cap=1000, args=args),
        cwd=workspace,
        env=env,
        capture_output=True,
        check=False,
    )
    ran = [json.loads(line) for line in report.read_text().splitlines()]
    items = {e["nodeid"]: e["status"] for e in ran if e["event"] == "item"}
    assert items == {"tests/pay/test_pay.py::test_b": "failed", "tests/test_p.py::test_p[2]": "passed"}
    assert not [e for e in ran if e["event"] == "collect"]


def test_nothing_left_to_run() -> None:
    assert selected_args(Path("/nonexistent"), Path("/tmp"), ["tests/a.py::t"], []) is None


def test_bdd_selection_becomes_name_patterns() -> None:
    spec = {"workspace": "w", "feature": "features/pay.feature"}
    keys = [
        "features/pay.feature::Pay by card",
        "features/pay.feature::Refund [1.2]",
        "features/other.feature::Elsewhere",
    ]
    patterns = selected_patterns(spec, keys)
    assert patterns == [r"^Pay\ by\ card$|^Pay\ by\ card -- @", r"^Refund -- @1\.2(?: |$)"]
    argv = behave_argv(
        feature=Path("f.feature"), report=Path("r"), spec={**spec, "scenario": "x"}, names=patterns
    )
    assert [a for a in argv if a.startswith("--name")] == [f"--name={p}" for p in patterns]
    assert selected_patterns({**spec, "scenario": "Refund"}, keys) == [r"^Refund -- @1\.2(?: |$)"]


def test_behave_runs_only_the_selected_scenarios_and_outline_rows() -> None:
    feature = "features/login.feature"
    steps: list[StepRecord] = []
    ctx = RunContext(
        execution_id=uuid.uuid4(),
        attempt=1,
        snapshot={
            "name": "t",
            "kind": "bdd",
            "spec": {"workspace": "bdd-demo", "feature": feature},
            "timeout_s": 60,
        },
        params={},
        workspace_root=BDD_DEMO,
        output_cap=64 * 1024,
        stop=threading.Event(),
        emit=lambda step: not steps.append(step),  # type: ignore[func-returns-value]
        selection={
            "whole": False,
            "tests": [f"{feature}::Alice signs in", f"{feature}::Wrong credentials are refused [1.2]"],
        },
    )
    outcome = bdd.run(ctx)
    assert outcome.status is Status.PASSED, outcome.error
    ran = {
        (s.details["scenario"].split(" -- ")[0], (s.details.get("example") or {}).get("id"))
        for s in steps
        if s.status != "skipped"
    }
    assert ran == {("Alice signs in", None), ("Wrong credentials are refused", "1.2")}
    # behave reports the outline's other row as not run: a skipped step, nothing else of the feature
    assert {s.details["scenario"] for s in steps if s.status == "skipped"} == {
        "Wrong credentials are refused -- @1.1 unknown name or wrong password"
    }
