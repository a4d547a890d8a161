"""Selective execution over HTTP on PostgreSQL: the dry run and its reasons, refused rules, the
selection kept with a case execution and read back by the claim, a suite running only its selected
members, and the observation report."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from db.attempts import claim
from db.models import Execution, Test, TestResult
from db.types import utcnow
from tests.integration.support import problem

Headers = dict[str, str]
CASES, SUITES = "/api/v1/test-cases", "/api/v1/test-suites"
SELECT, RUN_CASE, RUN_SUITE = (
    "/api/v1/executions/select",
    "/api/v1/executions/case",
    "/api/v1/executions/suite",
)
PAY, SHOP = "tests/payments/test_pay.py", "tests/shop/test_cart.py"


@pytest.fixture
def admin(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.ADMIN)


def pytest_case(client: TestClient, admin: Headers, **extra: Any) -> dict[str, Any]:
    body = {
        "name": f"py-{uuid.uuid4().hex[:6]}",
        "kind": "pytest",
        "spec": {"workspace": "demo", "args": ["tests"]},
        **extra,
    }
    response = client.post(CASES, json=body, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def history(
    session: Session,
    case_id: str,
    runs: list[dict[str, str]],
    *,
    branch: str = "main",
    duration: float = 1.0,
    revision: str | None = None,
) -> list[uuid.UUID]:
    """Results of ``runs`` (oldest first; each: test key -> status), one execution each; the tests
    of the shop take ``duration`` seconds, the others 1."""
    start = utcnow() - timedelta(hours=len(runs))
    ids: dict[str, uuid.UUID] = {}
    executions = []
    with session.begin():
        for n, run in enumerate(runs):
            execution = uuid.uuid4()
            executions.append(execution)
            for key, status in run.items():
                if key not in ids:
                    ids[key] = uuid.uuid4()
                    session.add(
                        Test(
                            id=ids[key], test_case_id=uuid.UUID(case_id), key=key, kind="pytest", name=key,
                            file=key.split("::")[0], first_seen_at=start, last_seen_at=start,
                        )
                    )  # fmt: skip
                    session.flush()
                session.add(
                    TestResult(
                        test_id=ids[key], test_case_id=uuid.UUID(case_id), execution_id=execution,
                        root_execution_id=execution, trigger_kind="api", attempt=1, status=status,
                        duration_s=duration if "cart" in key else 1.0, branch=branch, revision=revision,
                        recorded_at=start + timedelta(hours=n),
                    )
                )  # fmt: skip
    return executions


RUNS = [
    {f"{PAY}::test_ok": "passed", f"{PAY}::test_broke": "passed", f"{SHOP}::test_cart": "failed"},
    {f"{PAY}::test_ok": "passed", f"{PAY}::test_broke": "failed", f"{SHOP}::test_cart": "passed"},
]


def test_the_dry_run_lists_every_test_with_its_rule_and_reason(
    client: TestClient, admin: Headers, session: Session
) -> None:
    case = pytest_case(client, admin)
    history(session, case["id"], RUNS)
    body = {"test_case_id": case["id"], "selection": {"rules": ["failed-in-last:1"], "exclude": []}}
    shown = client.post(SELECT, json=body, headers=admin).json()
    (only,) = shown["cases"]
    tests = {t["key"]: t for t in only["tests"]}
    assert tests[f"{PAY}::test_broke"] == {
        "key": f"{PAY}::test_broke",
        "selected": True,
        "rule": "failed-in-last:1",
        "reason": "failed in 1 of its last 1 runs",
    }
    assert tests[f"{SHOP}::test_cart"]["selected"] is False
    assert tests[f"{SHOP}::test_cart"]["reason"] == "matched no rule"
    assert shown["counts"] == {"selected": 1, "total": 3, "cases_selected": 1, "cases_total": 1}
    assert only["whole"] is False

    # union and exclusion
    body["selection"] = {"rules": ["failed-in-last:2"], "exclude": ["changed-files"], "changed_files": [SHOP]}
    shown = client.post(SELECT, json=body, headers=admin).json()
    picked = {t["key"]: (t["selected"], t["rule"]) for t in shown["cases"][0]["tests"]}
    assert picked == {
        f"{PAY}::test_broke": (True, "failed-in-last:2"),
        f"{PAY}::test_ok": (False, None),
        f"{SHOP}::test_cart": (False, "changed-files"),
    }
    assert session.scalars(select(Execution.id)).all() == [], "a dry run creates nothing"


@pytest.mark.parametrize(
    ("selection", "field", "words"),
    [
        ({"rules": ["fastest:3"]}, "body.selection.rules", "unknown rule 'fastest:3'"),
        ({"rules": ["failed-in-last:0"]}, "body.selection.rules", "failed-in-last:0"),
        ({"rules": ["flaky"], "exclude": ["tag:"]}, "body.selection.exclude", "tag needs a value"),
        ({"rules": ["changed-files"]}, "body.selection.changed_files", "needs changed_files"),
        ({"rules": []}, "body.selection.rules", "at least one rule"),
        ({"rules": ["flaky"], "observe": ["new"]}, "body.selection.observe", "not both"),
        ({"rules": ["group:no-such-suite"]}, "body.selection", "no test suite named 'no-such-suite'"),
    ],
)
def test_bad_rules_are_refused_naming_them(
    client: TestClient, admin: Headers, selection: dict[str, Any], field: str, words: str
) -> None:
    case = pytest_case(client, admin)
    for path in (SELECT, RUN_CASE):
        response = client.post(path, json={"test_case_id": case["id"], "selection": selection}, headers=admin)
        body = problem(response, 422)
        text = str(body)
        assert field in text and words.replace("'", "") in text.replace("'", ""), body


def test_a_case_execution_keeps_its_selection_and_the_claim_hands_it_to_the_worker(
    client: TestClient, admin: Headers, session: Session
) -> None:
    case = pytest_case(client, admin)
    history(session, case["id"], RUNS)
    response = client.post(
        RUN_CASE,
        json={"test_case_id": case["id"], "selection": {"rules": ["failed-in-last:1"]}},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    execution = response.json()
    assert execution["selection"]["tests"] == [f"{PAY}::test_broke"]
    assert execution["selection"]["counts"] == {"selected": 1, "total": 3}
    assert execution["selection"]["reasons"] == {
        f"{PAY}::test_broke": "failed-in-last:1: failed in 1 of its last 1 runs"
    }
    with session.begin():
        claimed = claim(session, uuid.UUID(execution["id"]), worker="w", lease_s=30)
    assert claimed is not None and claimed.selection == execution["selection"]


def test_nothing_selected_is_refused_unless_observed(
    client: TestClient, admin: Headers, session: Session
) -> None:
    case = pytest_case(client, admin)
    history(session, case["id"], [RUNS[0] | {f"{SHOP}::test_cart": "passed"}])
    body = {"test_case_id": case["id"], "selection": {"rules": ["failed-in-last:5"]}}
    assert (
        "matched nothing"
        in problem(client.post(RUN_CASE, json=body, headers=admin), 422, "body.selection")["detail"]
    )
    body["selection"] = {"observe": ["failed-in-last:5"]}
    response = client.post(RUN_CASE, json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["selection"]["observe"] is True


def test_a_case_without_history_runs_whole_for_new(client: TestClient, admin: Headers) -> None:
    case = pytest_case(client, admin)
    body = {"test_case_id": case["id"], "selection": {"rules": ["new"]}, "branch": "feature-x"}
    response = client.post(RUN_CASE, json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["selection"]["whole"] is True
    assert "no history" in response.json()["selection"]["reason"]


def test_a_suite_runs_only_the_members_its_file_map_selects(
    client: TestClient, admin: Headers, session: Session
) -> None:
    payments = pytest_case(client, admin, tags=["billing"])
    shop = pytest_case(client, admin)
    docs = pytest_case(client, admin, file_map={"docs/**": ["tests/docs"]})
    history(session, payments["id"], [{f"{PAY}::test_ok": "passed"}])
    history(session, shop["id"], [{f"{SHOP}::test_cart": "passed"}])
    suite = client.post(
        SUITES,
        json={
            "name": f"s-{uuid.uuid4().hex[:6]}",
            "case_ids": [payments["id"], shop["id"], docs["id"]],
            "file_map": {"src/payments/**": ["tag:billing"], "src/shop/": ["tests/shop"]},
        },
        headers=admin,
    ).json()
    assert suite["file_map"] == {"src/payments/**": ["tag:billing"], "src/shop/": ["tests/shop"]}
    selection = {"changed_files": ["src/payments/card.py"]}
    response = client.post(
        RUN_SUITE, json={"test_suite_id": suite["id"], "selection": selection}, headers=admin
    )
    assert response.status_code == 201, response.text
    root = response.json()
    assert root["selection"]["counts"]["cases_selected"] == 1
    assert sorted(root["selection"]["cases_dropped"]) == sorted([shop["name"], docs["name"]])
    members = session.scalars(
        select(Execution).where(Execution.parent_execution_id == uuid.UUID(root["id"]))
    ).all()
    assert [(str(m.test_case_id), m.selection["whole"]) for m in members] == [(payments["id"], True)]  # type: ignore[index]
    assert root["progress"]["total"] == 1

    # a changed test file selects its own tests; an unmapped path everything, said in the notes
    dry = {"test_suite_id": suite["id"], "selection": {"changed_files": [SHOP, "README.md"]}}
    shown = client.post(SELECT, json=dry, headers=admin).json()
    assert shown["notes"] == [
        "README.md is no known test file and matches no file_map glob: everything selected"
    ]
    assert all(c["whole"] and c["selected"] for c in shown["cases"])


def test_the_observation_report_counts_caught_and_missed_failures(
    client: TestClient, admin: Headers, session: Session
) -> None:
    case = pytest_case(client, admin)
    history(session, case["id"], RUNS)
    body = {"test_case_id": case["id"], "selection": {"observe": ["failed-in-last:1"]}}
    execution = client.post(RUN_CASE, json=body, headers=admin).json()
    assert execution["selection"]["observe"] is True and execution["selection"]["tests"] == [
        f"{PAY}::test_broke"
    ]
    # it ran everything: test_broke failed again (caught), test_cart failed (missed)
    tests = {
        t.key: t.id for t in session.scalars(select(Test).where(Test.test_case_id == uuid.UUID(case["id"])))
    }
    session.rollback()  # the read above began a transaction
    durations = {f"{PAY}::test_ok": 3.0, f"{PAY}::test_broke": 1.0, f"{SHOP}::test_cart": 6.0}
    statuses = {f"{PAY}::test_ok": "passed", f"{PAY}::test_broke": "failed", f"{SHOP}::test_cart": "failed"}
    with session.begin():
        for key, test_id in tests.items():
            session.add(
                TestResult(
                    test_id=test_id, test_case_id=uuid.UUID(case["id"]),
                    execution_id=uuid.UUID(execution["id"]), root_execution_id=uuid.UUID(execution["id"]),
                    trigger_kind="api", attempt=1,
                    status=statuses[key], duration_s=durations[key], recorded_at=utcnow(),
                )
            )  # fmt: skip
    report = client.get(f"/api/v1/executions/{execution['id']}/selection", headers=admin).json()
    assert report["observe"] is True and report["finished"] is False
    figures = {
        k: report["report"][k] for k in ("tests", "selected", "failures", "caught", "missed", "missed_tests")
    }
    assert figures == {
        "tests": 3,
        "selected": 1,
        "failures": 2,
        "caught": 1,
        "missed": 1,
        "missed_tests": [f"{SHOP}::test_cart"],
    }
    assert (report["report"]["time_total_s"], report["report"]["time_saved_s"]) == (10.0, 9.0)

    plain = client.post(RUN_CASE, json={"test_case_id": case["id"]}, headers=admin).json()
    problem(client.get(f"/api/v1/executions/{plain['id']}/selection", headers=admin), 404)


def test_file_maps_are_validated_and_shown(client: TestClient, admin: Headers) -> None:
    bad = {
        "name": "bad-map",
        "kind": "pytest",
        "spec": {"workspace": "demo"},
        "file_map": {"src/**": ["../x"]},
    }
    assert "relative test path prefix" in str(problem(client.post(CASES, json=bad, headers=admin), 422))
    case = pytest_case(client, admin, file_map={"src/**": ["tests"]})
    assert client.get(f"{CASES}/{case['id']}", headers=admin).json()["file_map"] == {"src/**": ["tests"]}
    changed = client.patch(
        f"{CASES}/{case['id']}", json={"file_map": {"lib/*.py": ["tag:lib"]}}, headers=admin
    )
    assert changed.json()["file_map"] == {"lib/*.py": ["tag:lib"]}


def test_the_rules_are_listed(client: TestClient, auth: Callable[..., Headers]) -> None:
    rules = client.get("/api/v1/rules", headers=auth(Role.VIEWER)).json()["items"]
    assert [r["syntax"] for r in rules][:4] == ["all", "tag:<tag>", "group:<suite>", "failed-in-last:<N>"]
    assert all(r["meaning"] for r in rules)


def test_every_history_rule_reads_postgresql(client: TestClient, admin: Headers, session: Session) -> None:
    case = pytest_case(client, admin)
    flips = [{f"{SHOP}::test_cart": s, f"{PAY}::test_ok": "passed"} for s in ["failed", "passed"] * 3]
    history(session, case["id"], flips, duration=2.0)
    history(session, case["id"], [{f"{PAY}::test_new": "passed"}], branch="feature")

    def picked(*rules: str, branch: str = "main") -> dict[str, str | None]:
        body = {"test_case_id": case["id"], "selection": {"rules": list(rules)}, "branch": branch}
        response = client.post(SELECT, json=body, headers=admin)
        assert response.status_code == 200, response.text
        return {
            t["key"].rsplit("::")[-1]: t["rule"]
            for t in response.json()["cases"][0]["tests"]
            if t["selected"]
        }

    assert picked("flaky") == {"test_cart": "flaky"}
    assert "flip rate 1.0 on main (5 flips in 6 runs)" in reason_of(client, admin, case["id"], "test_cart")
    assert picked("failure-rate-above:0.4") == {"test_cart": "failure-rate-above:0.4"}
    assert picked("new") == {"test_new": "new"}
    assert picked("new", branch="feature") == {"test_cart": "new", "test_ok": "new"}
    assert picked("slowest:1") == {"test_cart": "slowest:1"}
    assert picked("failed-in-last:2") == {"test_cart": "failed-in-last:2"}
    assert picked("failed-in-last:1") == {}


def test_a_suite_observation_reports_over_its_members(
    client: TestClient, admin: Headers, session: Session
) -> None:
    broken = pytest_case(client, admin)
    steady = pytest_case(client, admin)
    history(session, broken["id"], RUNS)
    history(session, steady["id"], [{f"{SHOP}::test_cart": "passed"}])
    suite = client.post(
        SUITES,
        json={"name": f"s-{uuid.uuid4().hex[:6]}", "case_ids": [broken["id"], steady["id"]]},
        headers=admin,
    ).json()
    body = {"test_suite_id": suite["id"], "selection": {"observe": ["failed-in-last:1"]}}
    root = client.post(RUN_SUITE, json=body, headers=admin).json()
    assert root["progress"]["total"] == 2, "an observation runs every member"
    session.rollback()
    members = {
        str(m.test_case_id): m
        for m in session.scalars(
            select(Execution).where(Execution.parent_execution_id == uuid.UUID(root["id"]))
        )
    }
    assert members[steady["id"]].selection["tests"] == []  # type: ignore[index]
    tests = {(str(t.test_case_id), t.key): t.id for t in session.scalars(select(Test))}
    session.rollback()
    # the broken case's selected test fails again; the steady case's test fails too: missed
    outcomes = [(broken["id"], f"{PAY}::test_broke", "failed"), (steady["id"], f"{SHOP}::test_cart", "error")]
    with session.begin():
        for case_id, key, status in outcomes:
            member = members[case_id]
            session.add(
                TestResult(
                    test_id=tests[(case_id, key)], test_case_id=uuid.UUID(case_id), execution_id=member.id,
                    root_execution_id=uuid.UUID(root["id"]), trigger_kind="child", attempt=1, status=status,
                    duration_s=2.0, recorded_at=utcnow(),
                )
            )  # fmt: skip
    report = client.get(f"/api/v1/executions/{root['id']}/selection", headers=admin).json()["report"]
    assert {k: report[k] for k in ("tests", "failures", "caught", "missed", "missed_tests")} == {
        "tests": 2,
        "failures": 2,
        "caught": 1,
        "missed": 1,
        "missed_tests": [f"{SHOP}::test_cart"],
    }


def reason_of(client: TestClient, headers: Headers, case_id: str, name: str) -> str:
    body = {"test_case_id": case_id, "selection": {"rules": ["flaky"]}}
    tests = client.post(SELECT, json=body, headers=headers).json()["cases"][0]["tests"]
    return next(t["reason"] for t in tests if t["key"].endswith(f"::{name}"))


def test_a_test_that_passed_and_failed_on_one_revision_is_selected_as_flaky_saying_so(
    client: TestClient, admin: Headers, session: Session
) -> None:
    case = pytest_case(client, admin)
    history(
        session,
        case["id"],
        [{f"{SHOP}::test_cart": "passed"}, {f"{SHOP}::test_cart": "failed"}],
        revision="abc123",
    )
    assert reason_of(client, admin, case["id"], "test_cart").endswith("passed and failed on revision abc123")
