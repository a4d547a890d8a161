"""POST /api/v1/results/junit: a report run elsewhere becomes one finished execution with its steps
and per-test results; a bad report or request writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.settings import get_settings
from db.models import Test, TestCase, TestResult
from db.session import new_session
from db.types import utcnow
from tests.integration.support import problem
from tests.unit.test_junit_import import BOMB, SUREFIRE, run_pytest

Headers = dict[str, str]
URL = "/api/v1/results/junit"
PROJECT = {
    "tests/__init__.py": "",
    "tests/test_calc.py": """
import pytest

class TestAdd:
    def test_small(self):
        assert 1 + 1 == 2

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        print("checking", n)
        assert n == 1

def test_skipped():
    pytest.skip("later")
""",
}
NODES = {
    "tests/test_calc.py::TestAdd::test_small": "passed",
    "tests/test_calc.py::TestAdd::test_param[1]": "passed",
    "tests/test_calc.py::TestAdd::test_param[2]": "failed",
    "tests/test_calc.py::test_skipped": "skipped",
}


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER, "ci-bot")


def make_case(session: Session, kind: str) -> TestCase:
    spec: dict[str, Any] = (
        {"workspace": "calc", "args": []}
        if kind == "pytest"
        else {"workspace": "demo", "steps": [{"run": ["true"]}]}
    )
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=f"{kind}-{uuid.uuid4().hex[:6]}",
            kind=kind,
            spec=spec,
            tags=[],
            timeout_s=60,
        )
        session.add(case)
    return case


@pytest.fixture
def pytest_case(session: Session) -> TestCase:
    """A pytest case, made before ``unchanged`` counts the rows (list it first)."""
    return make_case(session, "pytest")


def upload(client: TestClient, headers: Headers, data: bytes, **fields: str) -> Any:
    return client.post(
        URL, headers=headers, data=fields, files={"file": ("report.xml", data, "application/xml")}
    )


def results_of(execution_id: str) -> dict[str, tuple[str, str | None, str | None, str]]:
    with new_session() as s:
        rows = s.execute(
            select(
                Test.key, TestResult.status, TestResult.revision, TestResult.branch, TestResult.trigger_kind
            )
            .join(Test, Test.id == TestResult.test_id)
            .where(TestResult.execution_id == uuid.UUID(execution_id))
        ).all()
    return {key: (status, revision, branch, trigger) for key, status, revision, branch, trigger in rows}


def test_a_real_pytest_report_becomes_a_failed_execution_with_steps_and_results(
    client: TestClient, session: Session, tester: Headers, tmp_path: Path
) -> None:
    case = make_case(session, "pytest")
    data = run_pytest(tmp_path, "-o", "junit_logging=system-out", files=PROJECT)
    response = upload(
        client,
        tester,
        data,
        case=case.name,
        revision="a1b2c3d",
        branch="main",
        environment="ci",
        run_id="build-7",
    )
    assert response.status_code == 201, response.text
    execution = response.json()
    assert response.headers["Location"] == f"/api/v1/executions/{execution['id']}"
    assert (execution["status"], execution["trigger_kind"], execution["attempt"]) == ("FAILED", "ci", 1)
    assert (execution["revision"], execution["branch"], execution["environment"]) == ("a1b2c3d", "main", "ci")
    assert execution["run_id"] == "build-7"
    assert execution["error"] == "junit: 1 failed of 4 tests"
    assert execution["summary"]["total"] == 4 and execution["duration_s"] is not None

    shown = client.get(
        f"/api/v1/executions/{execution['id']}?include=steps,transitions", headers=tester
    ).json()
    assert {step["name"]: step["status"] for step in shown["steps"]} == NODES
    failed = next(step for step in shown["steps"] if step["status"] == "failed")
    assert "assert 2 == 1" in failed["error"] and "checking 2" in failed["output"]
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in shown["transitions"]] == [
        (None, "QUEUED", "import:ci-bot"),
        ("QUEUED", "RUNNING", "import:ci-bot"),
        ("RUNNING", "FAILED", "import:ci-bot"),
    ]
    # Per-test results, as a run on a worker records them: history and flaky detection see them.
    assert results_of(execution["id"]) == {
        key: (status, "a1b2c3d", "main", "ci") for key, status in NODES.items()
    }


def test_a_passing_report_of_a_generic_case_found_by_id_is_passed_with_one_test_per_testcase(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = make_case(session, "generic")
    passing = b"""<testsuite name="com.example.AppTest">
      <testcase name="testAdds" classname="com.example.AppTest" time="0.5"/>
      <testcase name="testLater" classname="com.example.AppTest"><skipped/></testcase>
    </testsuite>"""
    response = upload(client, tester, passing, case=str(case.id))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "PASSED"
    assert results_of(response.json()["id"]) == {
        "com.example.AppTest::testAdds": ("passed", None, None, "ci"),
        "com.example.AppTest::testLater": ("skipped", None, None, "ci"),
    }


def test_a_quarantined_tests_failure_does_not_fail_the_import(
    client: TestClient, session: Session, tester: Headers
) -> None:
    case = make_case(session, "generic")
    one_failure = SUREFIRE.replace("<error ", "<!--error ").replace("</error>", "-->")
    first = upload(client, tester, one_failure.encode(), case=case.name).json()
    assert first["status"] == "FAILED"
    with new_session() as s, s.begin():
        test = s.scalar(select(Test).where(Test.key == "com.example.AppTest::testDivides"))
        assert test is not None
        test.quarantined_at, test.quarantined_by, test.quarantine_reason = utcnow(), "lead", "flaky upstream"
    second = upload(client, tester, one_failure.encode(), case=case.name).json()
    assert second["status"] == "PASSED"
    assert second["summary"]["quarantined"] == ["com.example.AppTest::testDivides"]
    assert results_of(second["id"])["com.example.AppTest::testDivides"][0] == "failed"


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"<testsuite>\n  <testcase name='a'>\n</testsuite>", "mismatched tag at line 3, column 3"),
        (b"", "the report is empty"),
        (b"<html/>", "not a JUnit report"),
        (BOMB.encode(), "declares a DTD"),
    ],
    ids=["malformed", "empty", "not-junit", "entity-bomb"],
)
def test_a_bad_report_is_422_naming_the_problem_and_writes_nothing(
    client: TestClient, pytest_case: TestCase, tester: Headers, unchanged: None, data: bytes, detail: str
) -> None:
    case = pytest_case
    body = problem(upload(client, tester, data, case=case.name), 422, "file")
    assert detail in body["detail"]


def test_a_report_above_the_limit_is_refused(
    client: TestClient,
    pytest_case: TestCase,
    tester: Headers,
    unchanged: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = pytest_case
    monkeypatch.setattr(get_settings(), "import_max_bytes", 100)
    body = problem(upload(client, tester, SUREFIRE.encode(), case=case.name), 422, "file")
    assert "larger than 100 bytes" in body["detail"]


def test_bad_fields_an_unknown_case_and_missing_parts_are_refused(
    client: TestClient, pytest_case: TestCase, tester: Headers, unchanged: None
) -> None:
    case = pytest_case
    report = SUREFIRE.encode()
    problem(upload(client, tester, report, case="no-such-case"), 404, "body.case")
    problem(upload(client, tester, report, case=str(uuid.uuid4())), 404, "body.case")
    problem(upload(client, tester, report, case=case.name, revision="not a sha!"), 422, "body.revision")
    problem(upload(client, tester, report, case=case.name, branch="a b"), 422, "body.branch")
    problem(upload(client, tester, report), 422, "body.case")
    problem(client.post(URL, headers=tester, data={"case": case.name}), 422, "body.file")


def test_importing_needs_the_tester_role(
    client: TestClient, pytest_case: TestCase, auth: Callable[..., Headers], unchanged: None
) -> None:
    case = pytest_case
    report = SUREFIRE.encode()
    problem(upload(client, {}, report, case=case.name), 401)
    problem(upload(client, auth(Role.VIEWER), report, case=case.name), 403)


def test_a_repeated_upload_with_an_idempotency_key_returns_the_first_execution(
    client: TestClient, pytest_case: TestCase, tester: Headers
) -> None:
    report = SUREFIRE.encode()
    key = {"Idempotency-Key": "build-42-junit", **tester}
    first = upload(client, key, report, case=pytest_case.name)
    again = upload(client, key, report, case=pytest_case.name)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = upload(client, key, report, case=pytest_case.name, branch="other")
    problem(other, 422, "Idempotency-Key")
    listed = client.get("/api/v1/executions", params={"trigger_kind": "ci"}, headers=tester).json()
    assert [item["id"] for item in listed["items"]] == [first.json()["id"]]
