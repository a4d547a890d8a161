"""Prometheus metrics of the in-process API on real PostgreSQL: ``GET /metrics`` as Prometheus
parses it, counters that move only for committed work, the database gauges, ``GET /api/v1/queues``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.states import Status
from anvil.settings import get_settings
from api.routes import metrics as metrics_route
from db.attempts import finish
from db.models import Execution, TestCase
from db.session import new_session
from tests.helpers import claim_attempt, create_execution

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
EXECUTION_ROUTE = "/api/v1/executions/{execution_id}"


def scrape(client: Any, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def fresh_reading() -> Iterator[None]:
    """The database gauges read anew at the next scrape, not from an earlier test's reading."""
    metrics_route.DATABASE.read_at = float("-inf")
    yield
    metrics_route.DATABASE.read_at = float("-inf")


def test_requests_are_counted_by_route_template_method_and_status(
    client: Any, auth: Callable[..., Any]
) -> None:
    headers = auth(Role.VIEWER)
    before = scrape(client)
    missing = [uuid.uuid4(), uuid.uuid4()]
    for ident in missing:
        assert client.get(f"/api/v1/executions/{ident}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/executions/{missing[0]}").status_code == 401
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    route = {"method": "GET", "route": EXECUTION_ROUTE}
    requests = "anvil_http_requests_total"
    assert value(after, requests, **route, status="404") - value(before, requests, **route, status="404") == 2
    assert value(after, requests, **route, status="401") - value(before, requests, **route, status="401") == 1
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, requests, **unmatched) - value(before, requests, **unmatched) == 1
    count = "anvil_http_request_duration_seconds_count"
    assert value(after, count, **route) - value(before, count, **route) == 3
    # One series per template: no raw path (an execution id) became a label.
    assert not [key for key in after if any(str(missing[0]) in v for _, v in key[1])]


def test_a_submission_and_its_result_are_counted_once_each_after_their_commits(
    client: Any, auth: Callable[..., Any], case: TestCase, session: Session
) -> None:
    before = scrape(client)
    response = client.post(
        "/api/v1/executions/case",
        json={"test_case_id": str(case.id), "priority": "HIGH"},
        headers=auth(Role.TESTER),
    )
    assert response.status_code == 201, response.text
    execution_id = uuid.UUID(response.json()["id"])
    with session.begin():
        attempt = claim_attempt(session, execution_id, worker="w1/1", lease_s=30)
    assert attempt == 1
    with session.begin():
        assert finish(session, execution_id, attempt=1, status=Status.PASSED, actor="worker:w1", summary={})
    after = scrape(client)

    labels = {"kind": "generic", "trigger_kind": "api"}
    created = "anvil_executions_created_total"
    finished = "anvil_executions_finished_total"
    assert (
        value(after, created, **labels, status="QUEUED") - value(before, created, **labels, status="QUEUED")
        == 1
    )
    assert (
        value(after, finished, **labels, status="PASSED") - value(before, finished, **labels, status="PASSED")
        == 1
    )
    for histogram in ("anvil_execution_queue_wait_seconds_count", "anvil_execution_run_seconds_count"):
        assert value(after, histogram, priority="HIGH") - value(before, histogram, priority="HIGH") == 1
    with new_session() as s:
        row = s.execute(
            select(Execution.started_at, Execution.finished_at).where(Execution.id == execution_id)
        ).one()
    ran = (row.finished_at - row.started_at).total_seconds()
    run_sum = "anvil_execution_run_seconds_sum"
    assert value(after, run_sum, priority="HIGH") - value(before, run_sum, priority="HIGH") == pytest.approx(
        ran, abs=1e-3
    )


def test_rolled_back_work_is_never_counted(client: Any, case: TestCase, session: Session) -> None:
    before = scrape(client)
    labels = {"kind": "generic", "trigger_kind": "ci", "status": "QUEUED"}
    with new_session() as s:  # an insert rolled back
        s.begin()
        create_execution(s, case=case, priority=Priority.LOW, trigger_kind=TriggerKind.CI, requested_by=None)
        s.rollback()
    with new_session() as s, s.begin():  # one rolled back to its savepoint, one committed beside it
        with pytest.raises(RuntimeError), s.begin_nested():
            create_execution(
                s, case=case, priority=Priority.LOW, trigger_kind=TriggerKind.CI, requested_by=None
            )
            raise RuntimeError("give up this one")
        kept = create_execution(
            s, case=case, priority=Priority.LOW, trigger_kind=TriggerKind.CI, requested_by=None
        )
    with session.begin():
        claim_attempt(session, kept.id, worker="w1/1", lease_s=30)
    with new_session() as s:  # a result rolled back
        s.begin()
        assert finish(s, kept.id, attempt=1, status=Status.FAILED, actor="worker:w1", summary={})
        s.rollback()
    after = scrape(client)

    created = "anvil_executions_created_total"
    assert value(after, created, **labels) - value(before, created, **labels) == 1
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(Execution)) == 1
    failed = {"kind": "generic", "trigger_kind": "ci", "status": "FAILED"}
    finished = "anvil_executions_finished_total"
    assert value(after, finished, **failed) == value(before, finished, **failed)
    wait = "anvil_execution_queue_wait_seconds_count"
    assert (
        value(after, wait, priority="LOW") - value(before, wait, priority="LOW") == 1
    )  # the claim committed


def test_queue_depth_and_active_executions_are_what_postgresql_holds(
    client: Any, queued: Callable[..., uuid.UUID], fresh_reading: None
) -> None:
    for priority in (Priority.CRITICAL, Priority.NORMAL, Priority.NORMAL, Priority.DEFERRED):
        queued(priority=priority)
    samples = scrape(client)

    with new_session() as s:
        held = dict(
            s.execute(
                select(Execution.priority, func.count())
                .where(Execution.status == Status.QUEUED.value)
                .group_by(Execution.priority)
            ).all()
        )
    assert held == {"CRITICAL": 1, "NORMAL": 2, "DEFERRED": 1}
    for priority in Priority:
        assert value(samples, "anvil_queue_depth", priority=priority.value) == held.get(priority.value, 0)
        assert value(samples, "anvil_queue_oldest_wait_seconds", priority=priority.value) >= 0
    assert value(samples, "anvil_executions_active", status="QUEUED") == 4
    assert value(samples, "anvil_executions_active", status="RUNNING") == 0
    assert value(samples, "anvil_database_up") == 1


def test_the_database_is_read_once_for_scrapes_close_together(
    client: Any, queued: Callable[..., uuid.UUID], fresh_reading: None
) -> None:
    queued(priority=Priority.HIGH)
    assert value(scrape(client), "anvil_queue_depth", priority="HIGH") == 1
    queued(priority=Priority.HIGH)
    assert value(scrape(client), "anvil_queue_depth", priority="HIGH") == 1  # the cached reading
    metrics_route.DATABASE.read_at = float("-inf")  # as if MAX_AGE_S had passed
    assert value(scrape(client), "anvil_queue_depth", priority="HIGH") == 2


def test_queues_endpoint_gives_depth_and_oldest_wait_per_priority(
    client: Any, auth: Callable[..., Any], queued: Callable[..., uuid.UUID]
) -> None:
    assert client.get("/api/v1/queues").status_code == 401
    queued(priority=Priority.HIGH)
    queued(priority=Priority.HIGH)
    queued(priority=Priority.LOW)

    response = client.get("/api/v1/queues", headers=auth(Role.VIEWER))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [q["priority"] for q in body["items"]] == [p.value for p in Priority]
    by_priority = {q["priority"]: q for q in body["items"]}
    assert by_priority["HIGH"]["waiting"] == 2 and by_priority["HIGH"]["queue"] == "high"
    assert by_priority["LOW"]["waiting"] == 1
    nobody = {"waiting": 0, "oldest_queued_at": None, "oldest_wait_s": None}
    assert by_priority["CRITICAL"] == {"priority": "CRITICAL", "queue": "critical", **nobody}
    assert (
        by_priority["HIGH"]["oldest_wait_s"] >= 0 and by_priority["HIGH"]["oldest_queued_at"] <= body["now"]
    )
    assert body["waiting"] == 3
    assert "/api/v1/queues" in client.get("/openapi.json").json()["paths"]


def test_events_sent_to_a_stream_are_counted(
    client: Any, auth: Callable[..., Any], queued: Callable[..., uuid.UUID], session: Session
) -> None:
    execution_id = queued()
    with session.begin():
        claim_attempt(session, execution_id, worker="w1/1", lease_s=30)
    with session.begin():
        finish(session, execution_id, attempt=1, status=Status.PASSED, actor="worker:w1", summary={})
    before = scrape(client)
    response = client.get(f"/api/v1/executions/{execution_id}/events", headers=auth(Role.VIEWER))
    assert response.status_code == 200
    after = scrape(client)

    sent = "anvil_events_streamed_total"
    assert response.text.count("event: transition") == 3  # QUEUED, RUNNING, PASSED
    assert value(after, sent, type="transition") - value(before, sent, type="transition") == 3
    assert value(after, sent, type="end") - value(before, sent, type="end") == 1


def test_a_metrics_token_is_required_once_set(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANVIL_METRICS_TOKEN", "scrape-me-" + "x" * 20)
    get_settings.cache_clear()
    try:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        samples = scrape(client, {"Authorization": "Bearer scrape-me-" + "x" * 20})
        assert any(name == "anvil_http_requests_total" for name, _ in samples)
    finally:
        monkeypatch.delenv("ANVIL_METRICS_TOKEN")
        get_settings.cache_clear()


def test_a_metrics_port_serves_this_process_and_asks_for_the_token(client: Any) -> None:
    import httpx

    from anvil.metrics_export import serve
    from tests.e2e.conftest import free_port

    port = free_port()
    stop = serve(port, host="127.0.0.1", token="port-token-" + "y" * 20)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        refused = httpx.get(url, timeout=5)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
        served = httpx.get(url, headers={"Authorization": "Bearer port-token-" + "y" * 20}, timeout=5)
        assert served.status_code == 200
        names = {family.name for family in text_string_to_metric_families(served.text)}
        assert {"anvil_executions_finished", "anvil_execution_run_seconds"} <= names
        assert "anvil_queue_depth" not in names  # the database gauges are the API's alone
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    finally:
        stop()
