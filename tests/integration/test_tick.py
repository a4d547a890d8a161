"""The scheduler tick against the real database: lost workers, deadlines, cancel requests, expiry,
manual timeouts, and the leader lease when two beats tick at once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import Status
from anvil.settings import Settings, get_settings
from db.session import new_session
from scheduler.tick import TickReport, run_tick
from tests.helpers import claim_attempt
from tests.integration.scheduling import (
    case_in_db,
    claim_one,
    finish_one,
    row,
    sql,
    tick,
    tick_until,
    transitions,
)
from tests.integration.support import published_ids

Headers = dict[str, str]
EXECUTIONS = "/api/v1/executions"


@pytest.fixture
def tester(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.TESTER)


def settings(**changes: object) -> Settings:
    return get_settings().model_copy(update=changes)


def submit(client: TestClient, headers: Headers, case_id: uuid.UUID, **body: object) -> uuid.UUID:
    response = client.post(f"{EXECUTIONS}/case", json={"test_case_id": str(case_id), **body}, headers=headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def lose_worker(execution_id: uuid.UUID) -> None:
    """The worker died: its lease ran out (its heartbeat would have kept it in the future)."""
    sql(
        "UPDATE executions SET lease_expires_at = now() - interval '1 second' WHERE id = :id", id=execution_id
    )


def test_a_lost_lease_requeues_the_execution_as_worker_lost_and_publishes_it(
    client: TestClient, session: Session, tester: Headers, redis_client: redis.Redis
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    claim_one(execution_id, worker="doomed")
    assert tick().requeued == 0  # a valid lease is left alone
    lose_worker(execution_id)
    assert tick().requeued == 1

    requeued = row(execution_id)
    assert (requeued.status, requeued.attempt, requeued.worker) == ("QUEUED", 1, None)
    assert transitions(execution_id)[-1] == ("RUNNING", "QUEUED", "worker_lost")
    assert published_ids(redis_client, "normal") == [str(execution_id), str(execution_id)]
    assert claim_one(execution_id, worker="survivor") == 2  # the next attempt


def test_a_lease_lost_on_the_last_attempt_aborts_and_is_listed_as_a_dead_letter(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    max_attempts = row(execution_id).max_attempts
    assert max_attempts == get_settings().max_attempts
    for attempt in range(1, max_attempts + 1):
        assert claim_one(execution_id) == attempt
        lose_worker(execution_id)
        tick()
    aborted = row(execution_id)
    assert aborted.status == "ABORTED" and aborted.finished_at is not None
    assert aborted.error == f"worker_lost: {max_attempts} attempts, none finished"
    dead = client.get(EXECUTIONS, params={"status": "ABORTED"}, headers=tester).json()["items"]
    assert [(e["id"], e["error"]) for e in dead] == [(str(execution_id), aborted.error)]


def test_a_lost_execution_past_its_deadline_and_grace_times_out(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session, timeout_s=60).id)
    claim_one(execution_id)
    # Started 95 s ago: past the 60 s timeout plus 30 s grace; its worker stopped heartbeating.
    sql("UPDATE executions SET started_at = now() - interval '95 seconds' WHERE id = :id", id=execution_id)
    lose_worker(execution_id)
    report = tick(settings(timeout_grace_s=30.0))
    assert (report.lost, report.requeued) == (1, 0)
    timed_out = row(execution_id)
    assert timed_out.status == "TIMEOUT"
    assert "deadline of 60s passed" in (timed_out.error or "")


def test_a_lost_execution_still_within_its_grace_is_requeued_instead(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session, timeout_s=60).id)
    claim_one(execution_id)
    sql("UPDATE executions SET started_at = now() - interval '75 seconds' WHERE id = :id", id=execution_id)
    lose_worker(execution_id)
    tick(settings(timeout_grace_s=30.0))
    assert row(execution_id).status == "QUEUED"


def test_a_lost_execution_with_a_cancel_request_ends_cancelled(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id)
    claim_one(execution_id)
    assert client.post(f"{EXECUTIONS}/{execution_id}/cancel", headers=tester).json()["status"] == "RUNNING"
    lose_worker(execution_id)
    tick()
    cancelled = row(execution_id)
    assert cancelled.status == "CANCELLED"
    assert transitions(execution_id)[-1] == ("RUNNING", "CANCELLED", "cancelled; its worker was lost")


def test_an_execution_not_started_before_it_expires_is_skipped(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id, expires_in_s=0.5)
    shown = client.get(f"{EXECUTIONS}/{execution_id}", headers=tester).json()
    assert shown["expires_at"] is not None and shown["status"] == "QUEUED"
    tick()
    assert row(execution_id).status == "QUEUED"  # not expired yet
    tick_until(lambda: row(execution_id).status == "SKIPPED", timeout=10)
    skipped = row(execution_id)
    assert transitions(execution_id)[-1] == ("QUEUED", "SKIPPED", "expired")
    assert skipped.error == "expired before it started" and skipped.attempt == 0


def test_an_expired_execution_is_never_claimed_even_before_the_tick_marks_it(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id, expires_in_s=60)
    sql("UPDATE executions SET expires_at = now() - interval '1 second' WHERE id = :id", id=execution_id)
    with new_session() as s, s.begin():
        assert claim_attempt(s, execution_id, worker="late", lease_s=30) is None
    tick()
    assert row(execution_id).status == "SKIPPED"


def test_an_execution_started_in_time_does_not_expire(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session).id, expires_in_s=0.3)
    attempt = claim_one(execution_id)
    sql("UPDATE executions SET expires_at = now() - interval '1 second' WHERE id = :id", id=execution_id)
    tick()
    finish_one(execution_id, attempt, Status.PASSED)
    assert row(execution_id).status == "PASSED"


def test_a_suite_whose_members_all_expire_is_skipped_not_passed(
    client: TestClient, session: Session, tester: Headers, auth: Callable[..., Headers]
) -> None:
    cases = [case_in_db(session) for _ in range(2)]
    suite = client.post(
        "/api/v1/test-suites",
        json={"name": "expiring", "case_ids": [str(c.id) for c in cases]},
        headers=auth(Role.MAINTAINER),
    ).json()
    response = client.post(
        f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"], "expires_in_s": 0.3}, headers=tester
    )
    assert response.status_code == 201, response.text
    suite_id = uuid.UUID(response.json()["id"])
    members = client.get(EXECUTIONS, params={"parent_execution_id": str(suite_id)}, headers=tester).json()[
        "items"
    ]
    assert all(m["expires_at"] == response.json()["expires_at"] for m in members)
    tick_until(lambda: row(suite_id).status not in ("QUEUED", "RUNNING"), timeout=10)
    assert row(suite_id).status == "SKIPPED"
    assert {row(uuid.UUID(m["id"])).status for m in members} == {"SKIPPED"}
    assert "expired" not in [t[2] for t in transitions(suite_id)]  # the members expired, not the suite itself


def test_a_paused_manual_execution_past_its_deadline_times_out(
    client: TestClient, session: Session, tester: Headers
) -> None:
    execution_id = submit(client, tester, case_in_db(session, kind="manual").id)
    finish_one(execution_id, claim_one(execution_id), Status.PAUSED)
    paused = row(execution_id)
    assert paused.lease_expires_at is not None  # now + ANVIL_MANUAL_TIMEOUT_S (24 h by default)
    assert tick().paused_timeouts == 0
    sql(
        "UPDATE executions SET lease_expires_at = now() - interval '1 second' WHERE id = :id", id=execution_id
    )
    assert tick().paused_timeouts == 1
    timed_out = row(execution_id)
    assert timed_out.status == "TIMEOUT" and timed_out.finished_at is not None
    assert transitions(execution_id)[-1][:2] == ("PAUSED", "TIMEOUT")


def test_only_the_lease_holder_acts_when_two_beats_tick_at_once(
    client: TestClient, session: Session, tester: Headers
) -> None:
    ids = [submit(client, tester, case_in_db(session).id) for _ in range(5)]
    for execution_id in ids:
        claim_one(execution_id)
        lose_worker(execution_id)
    reports: dict[str, TickReport] = {}
    barrier = threading.Barrier(2)

    def beat(name: str) -> None:
        barrier.wait(timeout=10)
        reports[name] = run_tick(holder=name)

    threads = [threading.Thread(target=beat, args=(name,)) for name in ("beat-a", "beat-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    leaders = [name for name, report in reports.items() if report.leader]
    assert len(leaders) == 1, reports
    follower = next(name for name in reports if name not in leaders)
    assert reports[follower].requeued == 0 and reports[follower].published == []
    assert reports[leaders[0]].requeued == 5
    for execution_id in ids:
        assert [t[1] for t in transitions(execution_id)].count("QUEUED") == 2  # submitted, then requeued once
    # The lease is held: the other beat keeps following while the leader keeps ticking.
    assert run_tick(holder=follower).leader is False
    assert run_tick(holder=leaders[0]).leader is True


def test_another_beat_takes_over_when_the_leader_stops(session: Session) -> None:
    assert run_tick(holder="first").leader
    assert not run_tick(holder="second").leader
    sql("UPDATE scheduler_leases SET expires_at = now() - interval '1 second'")  # the first beat died
    assert run_tick(holder="second").leader
    assert not run_tick(holder="first").leader
