"""Test history, statistics and flaky detection over HTTP, on results written by the real path:
executions created, claimed and finished with their steps (the commit records the test results)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.flaky import Thresholds
from anvil.domain.results import TestOutcome
from anvil.domain.states import Status
from anvil.domain.steps import StepRecord, summarize
from anvil.domain.windows import Window, days
from db import history as history_queries
from db.attempts import finish
from db.executions import Source
from db.flaky import failing_tests, flaky_list, flaky_tests
from db.history import list_tests, recent_results
from db.models import Execution, ResultRollup, TestCase, TestResult, TestSuite
from db.scopes import Scope, result_filters
from db.session import new_session
from db.stats import stats
from db.test_results import store_outcomes
from tests.helpers import claim_attempt, create_execution
from tests.integration.support import problem

Auth = Callable[..., dict[str, str]]
A, B, C = "tests/test_x.py::test_alpha", "tests/test_x.py::test_beta", "tests/test_y.py::test_gamma[1]"


def pytest_case(session: Session, *, tags: list[str] | None = None) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=f"py-{uuid.uuid4().hex[:6]}",
            kind="pytest",
            spec={"workspace": "demo", "args": ["tests"]},
            tags=tags or [],
            timeout_s=60,
        )
        session.add(case)
    return case


def run(
    case: TestCase, outcomes: dict[str, str], *, revision: str, branch: str = "main", **fields: Any
) -> str:
    """One execution of ``case`` finished as a worker does, its tests ending as ``outcomes`` say."""
    with new_session() as s, s.begin():
        execution = create_execution(
            s, case=case, priority=Priority.NORMAL, trigger_kind=TriggerKind.API, requested_by=None,
            source=Source(revision, branch), **fields,
        )  # fmt: skip
    return finish_run(execution.id, outcomes)


def finish_run(execution_id: uuid.UUID, outcomes: dict[str, str]) -> str:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker="w", lease_s=30)
    assert attempt is not None
    now = datetime.now(UTC)
    steps = [
        StepRecord(
            seq=i + 1,
            name=key,
            status=status,
            started_at=now,
            finished_at=now,
            duration_s=0.1 * (i + 1),
            details={"kind": "test"},
        )  # fmt: skip
        for i, (key, status) in enumerate(outcomes.items())
    ]
    failed = any(status in ("failed", "error") for status in outcomes.values())
    with new_session() as s, s.begin():
        assert finish(
            s, execution_id, attempt=attempt, status=Status.FAILED if failed else Status.PASSED,
            actor="worker:w", summary=summarize([st.status for st in steps]), steps=steps,
        )  # fmt: skip
    return str(execution_id)


@pytest.fixture
def viewer(auth: Auth) -> dict[str, str]:
    return auth(Role.VIEWER)


@pytest.fixture
def history(session: Session) -> dict[str, Any]:
    """A case run three times: alpha always passes, beta fails on the second run only (the same
    revision as the first), gamma is skipped. A second case (tagged, in a suite) passes once."""
    case = pytest_case(session)
    first = run(case, {A: "passed", B: "passed", C: "skipped"}, revision="rev1")
    second = run(case, {A: "passed", B: "failed", C: "skipped"}, revision="rev1")
    third = run(case, {A: "passed", B: "passed", C: "skipped"}, revision="rev2", branch="feature/x")
    other = pytest_case(session, tags=["billing"])
    other_run = run(other, {A: "passed"}, revision="rev9")
    with session.begin():
        suite = TestSuite(
            id=uuid.uuid4(), name=f"suite-{uuid.uuid4().hex[:6]}", case_ids=[str(other.id)], tags=[]
        )
        session.add(suite)
    return {
        "case": case,
        "runs": [first, second, third],
        "other": other,
        "other_run": other_run,
        "suite": suite,
    }


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_tests_listing_filters_and_pages(
    client: TestClient, viewer: dict[str, str], history: dict[str, Any]
) -> None:
    case = history["case"]
    listed = ok(client.get("/api/v1/tests", params={"case": case.name}, headers=viewer))
    assert [t["key"] for t in listed["items"]] == [A, B, C]
    alpha, beta, gamma = listed["items"]
    assert (alpha["kind"], alpha["test_case_id"], alpha["case_name"]) == ("pytest", str(case.id), case.name)
    assert (alpha["last_status"], gamma["last_status"]) == ("passed", "skipped")
    assert beta["last_execution_id"] == history["runs"][2]
    assert (beta["quarantined"], beta["quarantined_at"], beta["quarantine_reason"]) == (False, None, None)
    assert alpha["file"] == "tests/test_x.py" and alpha["recent"] is None

    def keys(**params: Any) -> list[str]:
        return [
            t["key"]
            for t in ok(client.get("/api/v1/tests", params={"case": str(case.id), **params}, headers=viewer))[
                "items"
            ]
        ]

    assert keys(status="skipped") == [C]
    assert keys(search="BETA") == [B]
    assert keys(search="test_y.py") == [C]
    assert keys(search="%") == []  # a wildcard is a character like any other
    assert keys(flaky=True) == [B]
    assert keys(flaky=False) == [A, C]
    assert keys(quarantined=False) == [A, B, C]
    assert keys(quarantined=True) == []
    assert keys(kind="bdd") == []
    # Every case: the other case's alpha too; pages of two by name.
    page1 = ok(client.get("/api/v1/tests", params={"limit": 2}, headers=viewer))
    page2 = ok(
        client.get("/api/v1/tests", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=viewer)
    )
    assert [t["key"] for t in page1["items"] + page2["items"]] == [A, A, B, C]
    assert page2["next_cursor"] is None
    # The last results of each test, newest first.
    recent = ok(client.get("/api/v1/tests", params={"case": case.name, "recent": 2}, headers=viewer))
    beta_recent = recent["items"][1]["recent"]
    assert [(r["status"], r["execution_id"]) for r in beta_recent] == [
        ("passed", history["runs"][2]),
        ("failed", history["runs"][1]),
    ]


def test_one_test_and_its_history(
    client: TestClient, viewer: dict[str, str], history: dict[str, Any]
) -> None:
    listed = ok(
        client.get("/api/v1/tests", params={"case": history["case"].name, "search": "beta"}, headers=viewer)
    )
    beta_id = listed["items"][0]["id"]
    shown = ok(client.get(f"/api/v1/tests/{beta_id}", headers=viewer))
    assert shown["key"] == B and shown["flaky"]["flaky"] is True
    [evidence] = shown["flaky"]["evidence"]
    assert (evidence["kind"], evidence["revision"], evidence["branch"]) == ("same_revision", "rev1", "main")
    assert [(e["execution_id"], e["status"]) for e in evidence["executions"]] == [
        (history["runs"][0], "passed"),
        (history["runs"][1], "failed"),
    ]
    assert "rev1" in evidence["summary"]

    page = ok(client.get(f"/api/v1/tests/{beta_id}/history", params={"limit": 2}, headers=viewer))
    assert [(r["execution_id"], r["status"], r["revision"], r["branch"]) for r in page["items"]] == [
        (history["runs"][2], "passed", "rev2", "feature/x"),
        (history["runs"][1], "failed", "rev1", "main"),
    ]
    assert page["items"][0]["duration_s"] == pytest.approx(0.2)
    rest = ok(
        client.get(f"/api/v1/tests/{beta_id}/history", params={"cursor": page["next_cursor"]}, headers=viewer)
    )
    assert [r["execution_id"] for r in rest["items"]] == [history["runs"][0]]
    assert rest["next_cursor"] is None


def test_stats_over_scopes_and_windows(
    client: TestClient, viewer: dict[str, str], history: dict[str, Any]
) -> None:
    case = history["case"]
    found = ok(client.get("/api/v1/stats", params={"case": case.name, "window": "30d"}, headers=viewer))
    assert found["scope"] == {"case_ids": [str(case.id)], "tag": None, "branch": None}
    assert found["window"]["label"] == "30d" and found["window"]["since"] is not None
    assert (found["runs"], found["tests"], found["results"]) == (3, 3, 9)
    assert (found["passed"], found["failed"], found["error"], found["skipped"]) == (5, 1, 0, 3)
    assert found["pass_rate"] == round(5 / 6, 4) and found["failure_rate"] == round(1 / 6, 4)
    assert (found["flaky_tests"], found["flaky_rate"]) == (1, round(1 / 3, 4))
    # Durations 0.1 (alpha), 0.2 (beta), 0.3 (gamma) three times each: percentile_cont.
    # Percentiles come from the runs' duration histograms: within 5 % (anvil/domain/histograms.py).
    assert found["duration_p50_s"] == pytest.approx(0.2, rel=0.05)
    assert found["duration_p95_s"] == pytest.approx(0.3, rel=0.05)
    assert [f["key"] for f in found["slowest"]] == [C, B, A]
    assert found["slowest"][0]["mean_s"] == pytest.approx(0.3)
    [failing] = found["most_failing"]
    assert (failing["key"], failing["failures"], failing["runs"], failing["failure_rate"]) == (
        B,
        1,
        3,
        round(1 / 3, 4),
    )
    [today] = found["trend"]
    assert (today["passed"], today["failed"], today["error"], today["skipped"]) == (5, 1, 0, 3)
    assert today["day"] == datetime.now(UTC).date().isoformat()

    # The last run only; one branch; everything; a suite's members; a tag's cases.
    last = ok(client.get("/api/v1/stats", params={"case": str(case.id), "runs": 1}, headers=viewer))
    assert (last["runs"], last["results"], last["failed"], last["flaky_tests"]) == (1, 3, 0, 0)
    assert last["window"]["label"] == "last 1 runs" and last["window"]["runs"] == 1
    main = ok(client.get("/api/v1/stats", params={"case": case.name, "branch": "main"}, headers=viewer))
    assert (main["runs"], main["failed"], main["scope"]["branch"]) == (2, 1, "main")
    everything = ok(client.get("/api/v1/stats", headers=viewer))
    assert (everything["runs"], everything["tests"], everything["scope"]["case_ids"]) == (4, 4, None)
    for params in ({"suite": history["suite"].name}, {"suite": str(history["suite"].id)}, {"tag": "billing"}):
        scoped = ok(client.get("/api/v1/stats", params=params, headers=viewer))
        assert (scoped["runs"], scoped["tests"], scoped["passed"]) == (1, 1, 1), params
    both = ok(
        client.get(
            "/api/v1/stats", params={"case": case.name, "suite": history["suite"].name}, headers=viewer
        )
    )
    assert both["runs"] == 4
    nothing = ok(client.get("/api/v1/stats", params={"case": case.name, "tag": "billing"}, headers=viewer))
    assert (nothing["runs"], nothing["pass_rate"], nothing["duration_p50_s"], nothing["trend"]) == (
        0,
        None,
        None,
        [],
    )

    # Results older than the window are left out.
    with new_session() as s, s.begin():
        s.execute(
            update(TestResult)
            .where(TestResult.execution_id == uuid.UUID(history["runs"][0]))
            .values(recorded_at=datetime.now(UTC) - timedelta(days=3))
        )
        s.execute(
            update(ResultRollup)
            .where(ResultRollup.execution_id == uuid.UUID(history["runs"][0]))
            .values(recorded_at=datetime.now(UTC) - timedelta(days=3))
        )
    recent = ok(client.get("/api/v1/stats", params={"case": case.name, "window": "2d"}, headers=viewer))
    assert (recent["runs"], recent["flaky_tests"]) == (2, 0)
    assert (
        len(
            ok(client.get("/api/v1/stats", params={"case": case.name, "window": "1w"}, headers=viewer))[
                "trend"
            ]
        )
        == 2
    )

    slowest = ok(client.get("/api/v1/stats/slowest", params={"case": case.name, "limit": 1}, headers=viewer))
    assert [f["key"] for f in slowest["items"]] == [C]


def test_flaky_tests_with_their_evidence(
    client: TestClient, viewer: dict[str, str], history: dict[str, Any], session: Session
) -> None:
    # A test that passes on a retry after failing, in a case with a retry.
    retried = pytest_case(session)
    failed = run(
        retried,
        {A: "failed"},
        revision="rev5",
        branch="release",
        retry_policy={"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.01},
    )
    with new_session() as s, s.begin():
        retry = s.scalars(select(Execution).where(Execution.parent_execution_id == uuid.UUID(failed))).one()
        s.execute(update(Execution).where(Execution.id == retry.id).values(status="QUEUED"))
    passed = finish_run(retry.id, {A: "passed"})

    found = ok(client.get("/api/v1/stats/flaky-tests", headers=viewer))
    assert found["thresholds"] == {"flip_rate": 0.2, "min_flips": 2, "min_runs": 5}
    assert found["window"]["label"] == "30d"
    items = {(f["case_name"], f["key"]): f for f in found["items"]}
    assert set(items) == {(history["case"].name, B), (retried.name, A)}
    beta = items[history["case"].name, B]
    assert (beta["runs"], beta["failures"], beta["quarantined"]) == (3, 1, False)
    [same] = beta["evidence"]
    assert (same["kind"], same["revision"]) == ("same_revision", "rev1")
    assert {e["execution_id"] for e in same["executions"]} == set(history["runs"][:2])
    # A retry runs the same revision: both kinds of evidence, the strongest first.
    same_again, retry_evidence = items[retried.name, A]["evidence"]
    assert (same_again["kind"], retry_evidence["kind"]) == ("same_revision", "passed_on_retry")
    assert [e["execution_id"] for e in retry_evidence["executions"]] == [passed]
    assert (retry_evidence["revision"], retry_evidence["branch"]) == ("rev5", "release")
    # Equally strong evidence and as many failures: by name.
    assert [f["key"] for f in found["items"]] == [A, B]

    scoped = ok(client.get("/api/v1/stats/flaky-tests", params={"case": retried.name}, headers=viewer))
    assert [f["key"] for f in scoped["items"]] == [A]
    assert (
        ok(client.get("/api/v1/stats/flaky-tests", params={"branch": "feature/x"}, headers=viewer))["items"]
        == []
    )


def test_a_flip_rate_on_one_branch(client: TestClient, viewer: dict[str, str], session: Session) -> None:
    case = pytest_case(session)
    for i, status in enumerate(["passed", "failed", "passed", "failed", "passed"]):
        run(case, {A: status}, revision=f"r{i}")
    [item] = ok(client.get("/api/v1/stats/flaky-tests", params={"case": case.name}, headers=viewer))["items"]
    [evidence] = item["evidence"]
    assert (evidence["kind"], evidence["branch"], evidence["flips"], evidence["runs"]) == (
        "flip_rate",
        "main",
        4,
        5,
    )
    assert evidence["flip_rate"] == 1.0
    assert len(evidence["executions"]) == 4


def test_bad_parameters_are_named(
    client: TestClient, viewer: dict[str, str], history: dict[str, Any]
) -> None:
    for params, field in (
        ({"window": "30"}, "query.window"),
        ({"window": "0d"}, "query.window"),
        ({"window": "30d", "runs": 3}, "query.window"),
        ({"runs": 0}, "query.runs"),
        ({"runs": "many"}, "query.runs"),
        ({"branch": "has space"}, "query.branch"),
        ({"tag": "no/slash"}, "query.tag"),
        ({"case": ""}, "query.case.0"),
    ):
        for path in ("/api/v1/stats", "/api/v1/stats/flaky-tests", "/api/v1/stats/slowest"):
            problem(client.get(path, params=params, headers=viewer), 422, field)
    problem(client.get("/api/v1/stats", params={"case": "no-such-case"}, headers=viewer), 404, "query.case")
    problem(
        client.get("/api/v1/stats/flaky-tests", params={"suite": "nope"}, headers=viewer), 404, "query.suite"
    )
    problem(
        client.get("/api/v1/stats", params={"suite": str(uuid.uuid4())}, headers=viewer), 404, "query.suite"
    )
    problem(client.get("/api/v1/tests", params={"case": "no-such-case"}, headers=viewer), 404, "query.case")
    problem(client.get("/api/v1/tests", params={"status": "green"}, headers=viewer), 422, "query.status")
    problem(client.get("/api/v1/tests", params={"cursor": "garbage"}, headers=viewer), 422, "query.cursor")
    problem(client.get("/api/v1/tests", params={"recent": 51}, headers=viewer), 422, "query.recent")
    problem(client.get(f"/api/v1/tests/{uuid.uuid4()}", headers=viewer), 404)
    problem(client.get(f"/api/v1/tests/{uuid.uuid4()}/history", headers=viewer), 404)
    problem(client.get("/api/v1/tests/not-a-uuid", headers=viewer), 422)
    some = ok(client.get("/api/v1/tests", headers=viewer))["items"][0]["id"]
    problem(
        client.get(f"/api/v1/tests/{some}/history", params={"cursor": "eA"}, headers=viewer),
        422,
        "query.cursor",
    )
    problem(client.get("/api/v1/stats"), 401)
    problem(client.get("/api/v1/tests"), 401)


def test_sqlite_twin_of_the_statistics(sqlite_session: Session) -> None:
    """Standalone mode: the same figures and listings on SQLite (percentiles computed in Python)."""
    s = sqlite_session
    with s.begin():
        case = TestCase(id=uuid.uuid4(), name="lite", kind="pytest", spec={}, tags=["t"], timeout_s=60)
        s.add(case)
    now = datetime.now(UTC)
    ids = []
    for i, status in enumerate(["passed", "failed", "passed", "failed", "passed", "passed"]):
        execution = Execution(
            id=uuid.uuid4(), test_case_id=case.id, test_suite_id=None, root_execution_id=uuid.uuid4(),
            run_id=None, trigger_kind="api", attempt=1, retry_index=0, revision="same" if i < 2 else f"r{i}",
            branch="main", environment=None, case_snapshot={"kind": "pytest"},
            finished_at=now - timedelta(hours=6 - i), created_at=now,
        )  # fmt: skip
        with s.begin():
            store_outcomes(
                s,
                execution,
                [TestOutcome(A, A, "f", status, None, 1.0 + i), TestOutcome(B, B, "f", "passed", None, 0.5)],
            )
        ids.append(execution.id)
    found = stats(s, scope=Scope(), window=days(1), now=now)
    assert (found.runs, found.tests, found.passed, found.failed, found.flaky_tests) == (6, 2, 10, 2, 1)
    # Nearest rank of 12 durations (six of 0.5 s, then 1..6 s), read from histograms: within 5 %.
    assert found.duration_p50_s == pytest.approx(0.5, rel=0.05)
    assert found.duration_p95_s == pytest.approx(6.0, rel=0.05)
    assert sum(d.passed for d in found.trend) == 10
    [flaky] = flaky_tests(s, scope=Scope(), window=days(1), thresholds=Thresholds(), now=now)
    assert [e.kind for e in flaky.verdict.evidence] == ["same_revision", "flip_rate"]
    assert [x.execution_id for x in flaky.verdict.evidence[0].executions] == ids[:2]
    tests, _ = list_tests(s, limit=10, search="ALPHA", now=now)
    assert [t.key for t in tests] == [A]
    page, cursor = history_queries.test_history(s, tests[0].id, limit=4)
    assert [r.execution_id for r in page] == ids[:1:-1] and cursor is not None
    rest, end = history_queries.test_history(s, tests[0].id, limit=4, cursor=cursor)
    assert [r.execution_id for r in rest] == ids[1::-1] and end is None
    assert [r.status for r in recent_results(s, [tests[0].id], 2)[tests[0].id]] == ["passed", "passed"]
    last = stats(s, scope=Scope(branch="main"), window=Window(runs=2), now=now)
    assert (last.runs, last.results) == (2, 4)


def test_many_failing_tests_are_counted_before_their_rows_are_read(session: Session) -> None:
    """Above DIRECT failing tests, the candidates come from counts per branch (and one revision
    query): the same flaky tests as judging every failing test's rows."""
    case = pytest_case(session)
    keys = [f"tests/t.py::test_{i}" for i in range(4)]
    # test_0 flips on runs of their own revisions; test_1 fails once, on the revision of a pass;
    # test_2 fails once (its last run); test_3 always fails. (Flaky at a flip rate of 0.5.)
    plan = [
        ("passed", "passed", "passed", "failed"),
        ("passed", "failed", "passed", "failed"),
        ("failed", "passed", "passed", "failed"),
        ("passed", "passed", "passed", "failed"),
        ("failed", "passed", "passed", "failed"),
        ("passed", "passed", "failed", "failed"),
    ]
    for i, statuses in enumerate(plan):
        run(case, dict(zip(keys, statuses, strict=True)), revision="same" if i < 2 else f"r{i}")
    now = datetime.now(UTC)
    filters, _ = result_filters(session, Scope((case.id,)), days(1), now)
    failing = failing_tests(session, filters)
    assert len(failing) == 4
    thresholds = Thresholds(flip_rate=0.5)
    direct = flaky_list(session, filters, failing, thresholds, direct=100)
    counted = flaky_list(session, filters, failing, thresholds, direct=0)
    assert [(f.test.key, f.verdict) for f in counted] == [(f.test.key, f.verdict) for f in direct]
    assert [f.test.key for f in direct] == [keys[1], keys[0]]  # same revision first, then flip rate
    assert [f.verdict.strongest for f in direct] == ["same_revision", "flip_rate"]
    assert [(f.runs, f.failures) for f in direct] == [(6, 1), (6, 2)]


def test_the_flaky_count_of_statistics_agrees_with_the_flaky_list(session: Session) -> None:
    """Statistics count the same-revision flaky tests by one grouped read and judge only the rest:
    on a random history the count must equal the flaky list's length."""
    import random

    rng = random.Random(7)
    with session.begin():
        case = TestCase(id=uuid.uuid4(), name="mixed", kind="pytest", spec={}, tags=[], timeout_s=60)
        session.add(case)
    now = datetime.now(UTC)
    keys = [f"t.py::test_{i}" for i in range(30)]
    fail_rate = {key: rng.choice([0.0, 0.0, 0.1, 0.3, 0.6, 1.0]) for key in keys}
    for run_index in range(12):
        execution = Execution(
            id=uuid.uuid4(), test_case_id=case.id, test_suite_id=None, root_execution_id=uuid.uuid4(),
            run_id=None, trigger_kind="api", attempt=1, retry_index=0, revision=f"r{run_index // 2}",
            branch=rng.choice(["main", "main", "dev"]), environment=None, case_snapshot={"kind": "pytest"},
            finished_at=now - timedelta(hours=24 - run_index), created_at=now,
        )  # fmt: skip
        outcomes = [
            TestOutcome(key, key, "t.py", rng.choice(["failed", "error"]) if rng.random() < fail_rate[key]
                        else rng.choice(["passed"] * 9 + ["skipped"]), None, 0.1)
            for key in keys
        ]  # fmt: skip
        with session.begin():
            store_outcomes(session, execution, outcomes)
    with new_session() as s:
        listed = flaky_tests(s, scope=Scope(), window=days(2), thresholds=Thresholds(), now=now)
        counted = stats(s, scope=Scope(), window=days(2), now=now, thresholds=Thresholds())
    assert 0 < len(listed) < len(keys)  # the history has both kinds
    assert counted.flaky_tests == len(listed)
