"""The BDD runner in-process, with real behave processes (no database): results equal behave's own."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord
from tests.behave_oracle import run_behave
from workers.runners import bdd
from workers.runners.base import RunContext

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspaces" / "bdd-demo"
# A step that blocks until a file appears in the workspace: lets a test act while behave runs.
WAIT_STEPS = """
import time
from pathlib import Path

from behave import given


@given('the file "{name}" appears')
def file_appears(context, name):
    deadline = time.monotonic() + 30
    while not Path(name).exists():
        assert time.monotonic() < deadline, f"{name} did not appear"
        time.sleep(0.02)
"""
WAITING_FEATURE = """\
Feature: Waiting
  Scenario: quick
    Given an empty cart
    Then the cart total is 0.00

  Scenario: blocked
    Given the file "release" appears
    Then the cart total is 0.00
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace root holding a copy of the behave example (plus a waiting step) as ``bdd``."""
    shutil.copytree(EXAMPLE, tmp_path / "bdd")
    (tmp_path / "bdd" / "features" / "steps" / "wait_steps.py").write_text(WAIT_STEPS)
    return tmp_path


class Run:
    """One runner invocation: the steps it emitted (with when) and its outcome."""

    def __init__(self, root: Path, spec: dict[str, Any], *, timeout_s: float = 60) -> None:
        self.steps: list[StepRecord] = []
        self.emitted_at: list[float] = []
        self.stop = threading.Event()
        self.reasons: list[str] = []
        self.on_emit: list[Any] = []
        self.ctx = RunContext(
            execution_id=uuid.uuid4(),
            attempt=1,
            snapshot={"name": "t", "kind": "bdd", "spec": spec, "timeout_s": timeout_s},
            params={},
            workspace_root=root,
            output_cap=64 * 1024,
            stop=self.stop,
            emit=self._emit,
            stop_reason=self.reasons,
        )

    def _emit(self, step: StepRecord) -> bool:
        self.steps.append(step)
        self.emitted_at.append(time.monotonic())
        for hook in self.on_emit:
            hook(step)
        return True

    def __call__(self) -> Outcome:
        return bdd.run(self.ctx)

    def outcomes(self) -> list[tuple[str, str, str, str]]:
        return [
            (s.details["scenario"], s.keyword or "", s.name, s.details["behave_status"]) for s in self.steps
        ]


def test_login_feature_gives_behaves_own_results(root: Path) -> None:
    run = Run(root, {"workspace": "bdd", "feature": "features/login.feature"})
    outcome = run()
    behave = run_behave(root / "bdd", "features/login.feature")

    assert behave.exit_code == 1
    assert run.outcomes() == behave.steps
    assert outcome.status is Status.FAILED
    assert outcome.summary["scenarios"] == {"total": 8, **behave.counts["scenarios"]}
    assert {k: v for k, v in outcome.summary.items() if k not in ("total", "scenarios")} == behave.counts[
        "steps"
    ]
    assert outcome.summary["total"] == len(behave.steps) == 35
    # The failing assertion and the undefined step are named in the execution's error.
    assert 'Then the dashboard greets "bob"' in (outcome.error or "")
    assert "the dashboard greets 'alice', not 'bob'" in (outcome.error or "")
    assert 'undefined step: When "alice" asks for a password reset by SMS' in (outcome.error or "")


def test_steps_carry_background_outline_rule_table_and_doc_string(root: Path) -> None:
    run = Run(root, {"workspace": "bdd", "feature": "features/login.feature"})
    run()
    steps = run.steps

    assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
    first = steps[0]
    assert (first.keyword, first.name, first.status) == ("Given", "these accounts exist:", "passed")
    assert first.details["background"] is True and first.details["feature"] == "Login"
    assert first.details["table"][0] == ["username", "password", "locked"]
    assert first.details["location"] == "features/login.feature:9"
    assert first.started_at and first.finished_at and first.duration_s is not None

    outline_rows = [s for s in steps if s.details.get("outline") == "Wrong credentials are refused"]
    assert {s.details["example"]["values"]["username"] for s in outline_rows} == {"alice", "mallory"}
    assert {s.details["example"]["id"] for s in outline_rows} == {"1.1", "1.2"}

    mail = next(s for s in steps if s.name == 'a mail to "alice" reads:')
    assert mail.details["doc_string"] == "Hello alice,\nwelcome back to Anvil."

    assert {
        s.details["scenario"] for s in steps if s.details.get("rule") == "Locked accounts cannot sign in"
    } == {
        "Bob is locked out",
        "An administrator unlocks Bob",
    }
    failed = next(s for s in steps if s.status == "failed")
    assert failed.keyword == "Then" and failed.error and "not 'bob'" in failed.error
    after = steps[steps.index(failed) + 1]
    assert (after.keyword, after.status, after.started_at) == ("And", "skipped", None)
    undefined = next(s for s in steps if s.status == "undefined")
    assert undefined.error and "asks for a password reset by SMS" in undefined.error


@pytest.mark.parametrize(
    ("spec", "args", "status"),
    [
        ({"tags": "@smoke and not @slow"}, ["--tags", "@smoke and not @slow"], Status.PASSED),
        (
            {"scenario": "Wrong credentials are refused"},
            ["--name", "^Wrong credentials are refused -- @"],
            Status.PASSED,
        ),
        (
            {"scenario": "Password reset by SMS (a step nobody implemented yet)"},
            ["--name", "^Password reset"],
            Status.FAILED,
        ),
        (
            {"tags": "@slow", "scenario": "Bob is locked out"},
            ["--tags", "@slow", "--name", "^Bob is"],
            Status.ERROR,
        ),
    ],
)
def test_selection_by_tags_and_scenario_matches_behave(
    root: Path, spec: dict[str, Any], args: list[str], status: Status
) -> None:
    run = Run(root, {"workspace": "bdd", "feature": "features/login.feature", **spec})
    outcome = run()
    behave = run_behave(root / "bdd", "features/login.feature", *args)

    assert run.outcomes() == behave.steps
    assert outcome.status is status, outcome
    if status is Status.ERROR:
        assert outcome.error and outcome.error.startswith("no scenario matched the selection")


def test_feature_text_uses_the_workspace_steps_and_writes_nothing_into_it(root: Path) -> None:
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    text = "Feature: Typed\n  Scenario: sum\n    Given an empty cart\n    When I add these items:\n"
    text += "      | item | price |\n      | saw  | 20.00 |\n    Then the cart total is 20.00\n"
    run = Run(root, {"workspace": "bdd", "feature_text": text})

    outcome = run()

    assert outcome.status is Status.PASSED, outcome
    assert [(s.keyword, s.name, s.status) for s in run.steps] == [
        ("Given", "an empty cart", "passed"),
        ("When", "I add these items:", "passed"),
        ("Then", "the cart total is 20.00", "passed"),
    ]
    assert [s.details["location"] for s in run.steps] == [
        "feature_text:3",
        "feature_text:4",
        "feature_text:7",
    ]
    assert outcome.summary == {"total": 3, "passed": 3, "scenarios": {"total": 1, "passed": 1}}
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


def test_steps_are_recorded_while_behave_still_runs(root: Path) -> None:
    # The blocked scenario waits for a file that is only created once the quick scenario's steps
    # were recorded: if steps were recorded only at the end, it would wait 30 s and fail.
    workspace = root / "bdd"
    run = Run(root, {"workspace": "bdd", "feature_text": WAITING_FEATURE})
    run.on_emit.append(lambda step: len(run.steps) == 2 and (workspace / "release").touch())
    started = time.monotonic()

    outcome = run()

    assert outcome.status is Status.PASSED, outcome
    assert time.monotonic() - started < 20
    assert [s.status for s in run.steps] == ["passed"] * 4


def test_whole_test_timeout_kills_behave(root: Path) -> None:
    run = Run(root, {"workspace": "bdd", "feature_text": WAITING_FEATURE}, timeout_s=3)
    outcome = run()

    assert outcome.status is Status.TIMEOUT
    assert outcome.error and "test timeout after 3s" in outcome.error
    assert [s.status for s in run.steps] == ["passed", "passed"]


def test_stop_request_cancels_the_run(root: Path) -> None:
    run = Run(root, {"workspace": "bdd", "feature_text": WAITING_FEATURE})

    def stop_after_quick_scenario(step: StepRecord) -> None:
        if len(run.steps) == 2:
            run.reasons.append("cancelled by a person")
            run.stop.set()

    run.on_emit.append(stop_after_quick_scenario)
    outcome = run()

    assert outcome.status is Status.CANCELLED
    assert outcome.error == "stopped: cancelled by a person"
    assert not (root / "bdd" / "release").exists()


def test_before_all_hook_error_is_an_error_not_a_failure(root: Path) -> None:
    environment = root / "bdd" / "features" / "environment.py"
    environment.write_text(
        environment.read_text() + "\n\ndef before_all(context):\n    raise RuntimeError('no db')\n"
    )

    outcome = Run(root, {"workspace": "bdd", "feature": "features/cart.feature"})()

    assert outcome.status is Status.ERROR
    assert outcome.error and "without running any scenario" in outcome.error
    assert "HOOK-ERROR in before_all: RuntimeError: no db" in outcome.error


def test_hook_error_in_a_scenario_is_an_error_naming_the_hook(root: Path) -> None:
    environment = root / "bdd" / "features" / "environment.py"
    environment.write_text(
        environment.read_text()
        + "\n\ndef after_scenario(context, scenario):\n"
        + "    if scenario.name.startswith('Discount'):\n        raise RuntimeError('teardown broke')\n"
    )

    run = Run(root, {"workspace": "bdd", "feature": "features/cart.feature"})
    outcome = run()
    behave = run_behave(root / "bdd", "features/cart.feature")

    assert run.outcomes() == behave.steps
    assert outcome.summary["scenarios"] == {"total": 3, **behave.counts["scenarios"]}
    assert outcome.summary["scenarios"] == {"total": 3, "passed": 1, "hook_error": 2}
    assert outcome.status is Status.ERROR
    assert outcome.error and "HOOK-ERROR in after_scenario: RuntimeError: teardown broke" in outcome.error


def test_behave_configuration_error_is_an_error_with_behaves_message(root: Path) -> None:
    shutil.rmtree(root / "bdd" / "features" / "steps")

    outcome = Run(root, {"workspace": "bdd", "feature": "features/cart.feature"})()

    assert outcome.status is Status.ERROR
    assert outcome.error and "before finishing its report" in outcome.error
    assert "features/steps" in outcome.error


def test_feature_broken_after_the_case_was_stored_is_an_error(root: Path) -> None:
    (root / "bdd" / "features" / "cart.feature").write_text(
        "Feature: x\n  Scenario: a\n    Given b\n  oops\n"
    )

    outcome = Run(root, {"workspace": "bdd", "feature": "features/cart.feature"})()

    assert outcome.status is Status.ERROR
    assert outcome.error and "before finishing its report" in outcome.error


def test_missing_workspace_or_feature_on_the_worker_is_an_error(root: Path) -> None:
    missing_workspace = Run(root, {"workspace": "gone", "feature": "features/cart.feature"})()
    missing_feature = Run(root, {"workspace": "bdd", "feature": "features/gone.feature"})()

    assert missing_workspace.status is Status.ERROR and "does not exist" in (missing_workspace.error or "")
    assert missing_feature.status is Status.ERROR and "gone.feature" in (missing_feature.error or "")
