"""JUnit XML export: the pytest and behave examples against those tools' own reports, and the other kinds.

The pytest and BDD executions are recorded by the real runners (their subprocess, plugin and step
writer) into the session database; the report comes from the API and is read with junitparser.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml
from junitparser import TestCase as JCase
from junitparser import TestSuite as JSuite
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, StepStatus, TriggerKind
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord
from db.attempts import finish
from db.models import Execution, TestCase
from db.session import new_session
from db.suite_runs import create_suite_execution
from db.suites import create_suite
from db.transitions import transition
from tests.helpers import claim_attempt, create_execution, write_step
from tests.integration.conftest import Headers, TestClient
from workers.runners import bdd, pytest_runner
from workers.runners.base import RunContext

WORKSPACES = Path(__file__).resolve().parents[2] / "examples" / "workspaces"
XML = "application/xml"


@pytest.fixture
def viewer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.VIEWER)


def new_case(session: Session, kind: str, spec: dict[str, Any], name: str | None = None) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=name or f"{kind}-{uuid.uuid4().hex[:6]}",
            kind=kind,
            spec=spec,
            tags=[],
            timeout_s=120,
        )
        session.add(case)
    return case


def submit(session: Session, case: TestCase, **kw: Any) -> uuid.UUID:
    with session.begin():
        execution = create_execution(
            session,
            case=case,
            priority=Priority.NORMAL,
            trigger_kind=kw.pop("trigger_kind", TriggerKind.API),
            requested_by=None,
            actor="test",
            **kw,
        )
    return execution.id


def start(execution_id: uuid.UUID) -> int:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker="junit-host", lease_s=60)
    assert attempt is not None
    return attempt


def record(execution_id: uuid.UUID, attempt: int, step: StepRecord) -> bool:
    with new_session() as s, s.begin():
        return write_step(s, execution_id, attempt=attempt, step=step, lease_s=60)


def end(execution_id: uuid.UUID, attempt: int, status: Status, error: str | None = None) -> None:
    with new_session() as s, s.begin():
        assert finish(s, execution_id, attempt=attempt, status=status, actor="test", summary={}, error=error)


def run_with_runner(session: Session, case: TestCase, runner: Callable[[RunContext], Outcome]) -> uuid.UUID:
    """What a worker does, minus Celery: claim, run the real runner with a step writer, finish."""
    execution_id = submit(session, case)
    attempt = start(execution_id)
    with new_session() as s:
        snapshot = s.get_one(Execution, execution_id).case_snapshot
    ctx = RunContext(
        execution_id=execution_id,
        attempt=attempt,
        snapshot=snapshot,
        params={},
        workspace_root=WORKSPACES,
        output_cap=64 * 1024,
        stop=threading.Event(),
        emit=lambda step: record(execution_id, attempt, step),
    )
    outcome = runner(ctx)
    end(execution_id, attempt, outcome.status, outcome.error)
    return execution_id


def export(client: TestClient, execution_id: uuid.UUID, headers: Headers) -> JUnitXml:
    response = client.get(f"/api/v1/executions/{execution_id}/junit.xml", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(XML)
    return JUnitXml.fromstring(response.content)


def counts(suite: JSuite | JUnitXml) -> tuple[int, int, int, int]:
    return suite.tests, suite.failures, suite.errors, suite.skipped


def outcome(case: JCase) -> list[tuple[str, str | None, str | None]]:
    """(kind, type, first line of the message) of each result of a testcase."""
    return [
        (type(r).__name__, r.type, (r.message or "").splitlines()[0] if r.message else None)
        for r in case.result
    ]


def table(suite: JSuite) -> list[tuple[str, str, list[tuple[str, str | None, str | None]]]]:
    return [(case.classname, case.name, outcome(case)) for case in suite]


def only_suite(xml: JUnitXml) -> JSuite:
    suites = list(xml)
    assert len(suites) == 1
    return suites[0]


def test_the_pytest_example_reports_what_pytests_own_junitxml_reports(
    session: Session, client: TestClient, viewer: Headers, tmp_path: Path
) -> None:
    own = tmp_path / "pytest-own.xml"
    # One pytest run writes both Anvil's steps (through the worker's plugin) and pytest's own report.
    args = ["-m", "not slow", f"--junitxml={own}"]
    case = new_case(session, "pytest", {"workspace": "pytest-demo", "args": args}, "pytest-demo")
    execution_id = run_with_runner(session, case, pytest_runner.run)

    ours = export(client, execution_id, viewer)
    theirs = only_suite(JUnitXml.fromfile(str(own)))
    suite = only_suite(ours)

    assert counts(suite) == counts(theirs) == (15, 3, 3, 3)
    assert counts(ours) == counts(theirs), "the <testsuites> totals agree too"
    assert table(suite) == table(theirs)
    assert suite.name == "pytest-demo" and suite.hostname == "junit-host"
    by_name = {(c.classname, c.name): c for c in suite}
    failing = by_name["tests.test_basics", "test_failing_assertion"]
    assert "assert actual == expected" in failing.result[0].text
    assert "comparing the API answer with the expected one" in failing.system_out
    assert float(by_name["tests.test_fixtures", "test_leaves_a_mess"].time) > 0
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["anvil.execution_id"] == str(execution_id)
    assert properties["anvil.status"] == "FAILED"


def test_a_bdd_feature_reports_what_behaves_own_junit_reports(
    session: Session, client: TestClient, viewer: Headers, tmp_path: Path
) -> None:
    workspace = WORKSPACES / "bdd-demo"
    case = new_case(session, "bdd", {"workspace": "bdd-demo", "feature": "features/login.feature"})
    execution_id = run_with_runner(session, case, bdd.run)
    subprocess.run(
        [sys.executable, "-m", "behave", "features/login.feature", "--no-color", "-f", "plain",
         "-o", "/dev/null", "--junit", f"--junit-directory={tmp_path}"],
        cwd=workspace, capture_output=True, timeout=120, check=False,
    )  # fmt: skip

    suite = only_suite(export(client, execution_id, viewer))
    theirs = only_suite(JUnitXml.fromfile(str(tmp_path / "TESTS-login.xml")))

    assert counts(suite) == counts(theirs) == (8, 1, 1, 0)
    ours_table = [(c.classname, c.name, [k for k, _, _ in outcome(c)]) for c in suite]
    assert ours_table == [(c.classname, c.name, [k for k, _, _ in outcome(c)]) for c in theirs]
    failed = next(c for c in suite if c.result and type(c.result[0]).__name__ == "Failure")
    assert "the dashboard greets 'alice', not 'bob'" in failed.result[0].message
    assert 'Then the dashboard greets "bob" ... failed' in failed.result[0].text
    undefined = next(c for c in suite if c.result and type(c.result[0]).__name__ == "Error")
    assert undefined.result[0].type == "undefined"
    assert "undefined step" in undefined.result[0].message


def test_generic_steps_become_testcases_with_escaped_output(
    session: Session, client: TestClient, viewer: Headers
) -> None:
    case = new_case(session, "generic", {"workspace": "demo", "steps": []}, name="smoke <&> checks")
    execution_id = submit(session, case)
    attempt = start(execution_id)
    steps = [
        ("build", StepStatus.PASSED, None, "compiled \x1b[32mok\x1b[0m\x07"),
        ("unit", StepStatus.FAILED, "exit code 1, expected 0", "1 test failed"),
        ("slow", StepStatus.TIMEOUT, "step timeout after 5s: process group killed", None),
        ("publish", StepStatus.SKIPPED, "not run: an earlier step ended FAILED", None),
    ]
    for seq, (name, status, error, output) in enumerate(steps, start=1):
        assert record(
            execution_id, attempt, StepRecord(seq, name, status, duration_s=0.25, output=output, error=error)
        )
    end(execution_id, attempt, Status.FAILED, "step 2 (unit) failed: exit code 1, expected 0")

    xml = export(client, execution_id, viewer)
    suite = only_suite(xml)

    assert counts(suite) == (4, 1, 1, 1)
    assert suite.name == "smoke <&> checks"
    assert table(suite) == [
        ("smoke <&> checks", "build", []),
        ("smoke <&> checks", "unit", [("Failure", None, "exit code 1, expected 0")]),
        ("smoke <&> checks", "slow", [("Error", None, "step timeout after 5s: process group killed")]),
        ("smoke <&> checks", "publish", [("Skipped", None, "not run: an earlier step ended FAILED")]),
    ]
    build = list(suite)[0]
    # Control characters XML cannot carry are written as #xNN (as pytest does); the rest is kept.
    assert build.system_out == "compiled #x1B[32mok#x1B[0m#x07"
    assert float(build.time) == 0.25


def test_manual_tests_are_one_testcase_and_executions_without_steps_still_report(
    session: Session, client: TestClient, viewer: Headers
) -> None:
    manual = new_case(session, "manual", {"steps": []}, name="checkout by hand")
    manual_id = submit(session, manual)
    attempt = start(manual_id)
    for seq, status, comment in ((1, StepStatus.PASSED, None), (2, StepStatus.FAILED, "total shows 0.00")):
        step = StepRecord(
            seq,
            f"action {seq}",
            status,
            error=comment,
            details={
                "action": f"action {seq}",
                "expected": f"expected {seq}",
                "actual": "seen",
                "comment": comment,
            },
        )
        assert record(manual_id, attempt, step)
    end(manual_id, attempt, Status.FAILED, "step 2 failed")

    broken = new_case(session, "generic", {"workspace": "missing", "steps": []}, name="no workspace")
    broken_id = submit(session, broken)
    end(broken_id, start(broken_id), Status.ERROR, "workspace 'missing' does not exist on this worker")
    waiting_id = submit(
        session, new_case(session, "generic", {"workspace": "demo", "steps": []}, name="queued")
    )

    manual_suite = only_suite(export(client, manual_id, viewer))
    broken_suite = only_suite(export(client, broken_id, viewer))
    waiting_suite = only_suite(export(client, waiting_id, viewer))

    assert counts(manual_suite) == (1, 1, 0, 0)
    (only,) = list(manual_suite)
    assert (only.classname, only.name) == ("manual", "checkout by hand")
    assert outcome(only) == [("Failure", None, "step 2 (action 2) failed: total shows 0.00")]
    assert "2. action 2 ... failed" in only.system_out and "expected: expected 2" in only.system_out
    assert table(broken_suite) == [
        (
            "no workspace",
            "(execution)",
            [("Error", None, "execution ERROR: workspace 'missing' does not exist on this worker")],
        )
    ]
    assert table(waiting_suite) == [("queued", "(execution)", [("Skipped", None, "not finished: QUEUED")])]


def test_a_suite_reports_each_members_last_attempt(
    session: Session, client: TestClient, viewer: Headers
) -> None:
    members = [
        new_case(session, "generic", {"workspace": "demo", "steps": []}, name=f"member {i}") for i in range(3)
    ]
    with session.begin():
        suite = create_suite(session, created_by=None, name="nightly", case_ids=[str(c.id) for c in members])
    with session.begin():
        suite_execution, _ = create_suite_execution(
            session,
            suite=suite,
            priority=Priority.NORMAL,
            trigger_kind=TriggerKind.API,
            requested_by=None,
            actor="t",
        )
    by_name = _children_by_name(suite_execution.id)
    # member 0 passes; member 1 fails, is retried (RETRYING) and its retry passes; member 2 fails.
    for name, status in (
        ("member 0", Status.PASSED),
        ("member 1", Status.FAILED),
        ("member 2", Status.FAILED),
    ):
        child_id = by_name[name]
        attempt = start(child_id)
        step_status = StepStatus.PASSED if status is Status.PASSED else StepStatus.FAILED
        assert record(
            child_id,
            attempt,
            StepRecord(1, "check", step_status, error=None if status is Status.PASSED else "boom"),
        )
        end(child_id, attempt, status, None if status is Status.PASSED else "step 1 (check) failed: boom")
    retried = by_name["member 1"]
    with new_session() as s, s.begin():
        transition(s, retried, Status.RETRYING, from_=Status.FAILED, actor="test", reason="retry scheduled")
        retry = create_execution(
            s,
            case=s.get_one(TestCase, members[1].id),
            priority=Priority.NORMAL,
            trigger_kind=TriggerKind.RETRY,
            requested_by=None,
            actor="test",
            parent_execution_id=retried,
            correlation_id=suite_execution.id,
            root_execution_id=suite_execution.id,
        )
        retry_id = retry.id
    attempt = start(retry_id)
    assert record(retry_id, attempt, StepRecord(1, "check", StepStatus.PASSED))
    end(retry_id, attempt, Status.PASSED)

    xml = export(client, suite_execution.id, viewer)
    suites = list(xml)

    assert [s.name for s in suites] == ["member 0", "member 2", "member 1"]
    assert [counts(s) for s in suites] == [(1, 0, 0, 0), (1, 1, 0, 0), (1, 0, 0, 0)]
    assert counts(xml) == (3, 1, 0, 0)
    assert xml.name == "nightly"
    assert {p.name: p.value for p in suites[2].properties()}["anvil.execution_id"] == str(retry_id)


def _children_by_name(suite_execution_id: uuid.UUID) -> dict[str, uuid.UUID]:
    with new_session() as s:
        rows = s.execute(
            select(Execution.id, Execution.case_snapshot).where(
                Execution.root_execution_id == suite_execution_id, Execution.id != suite_execution_id
            )
        ).all()
    return {snapshot["name"]: execution_id for execution_id, snapshot in rows}


def test_unknown_executions_and_anonymous_callers_are_refused(client: TestClient, viewer: Headers) -> None:
    unknown = client.get(f"/api/v1/executions/{uuid.uuid4()}/junit.xml", headers=viewer)
    anonymous = client.get(f"/api/v1/executions/{uuid.uuid4()}/junit.xml")

    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert anonymous.status_code == 401
