"""The operations page in-process: queue depth per priority and the oldest wait (db/queues.py's
``queue_depths``, the query ``GET /api/v1/queues`` will reuse), the QUEUED / RUNNING / PAUSED
counts, the workers with their busy slots and state, the latest ABORTED executions with why, and
the link to Flower when ANVIL_FLOWER_URL is set."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.states import Status
from anvil.domain.workers import WorkerProcess
from anvil.settings import get_settings
from db import workers
from db.models import Execution, Worker
from db.queues import queue_depths
from db.session import new_session
from db.transitions import transition
from tests.integration.scheduling import case_in_db, claim_one
from tests.integration.ui_support import sign_in

MakeUser = Callable[[Role, str], str]
Queued = Callable[..., uuid.UUID]


def wait_since(execution_ids: list[uuid.UUID], seconds: float) -> None:
    """Make these QUEUED executions look as if they were queued ``seconds`` ago."""
    with new_session() as s, s.begin():
        s.execute(
            update(Execution)
            .where(Execution.id.in_(execution_ids))
            .values(queued_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def register(name: str, host: str, *, slots: int = 4, queues: tuple[str, ...] = ("high", "normal")) -> None:
    with new_session() as s, s.begin():
        worker = WorkerProcess(name=name, host=host, pid=4242, slots=slots, queues=queues, version="9.9")
        workers.register(s, worker=worker)


def abort(execution_id: uuid.UUID, reason: str) -> None:
    """What the scheduler does when an execution's workers were lost too often."""
    attempt = claim_one(execution_id, worker="gone@host/1")
    with new_session() as s, s.begin():
        transition(
            s, execution_id, Status.ABORTED, from_=Status.RUNNING, attempt=attempt, actor="scheduler",
            reason=reason, values={"finished_at": datetime.now(UTC), "error": reason, "worker": None},
        )  # fmt: skip


def row_of(text: str, marker: str) -> str:
    start = text.index(marker)
    return text[start : text.index("</tr>", start)]


@pytest.fixture
def seeded(session: Session, queued: Queued) -> dict[str, uuid.UUID]:
    """Two HIGH waiting 5 and 2 minutes, one LOW waiting a minute, one RUNNING on w1, one ABORTED."""
    case = case_in_db(session, name="payments")
    high_old, high_new = queued(case, priority=Priority.HIGH), queued(case, priority=Priority.HIGH)
    low = queued(case, priority=Priority.LOW)
    wait_since([high_old], 300)
    wait_since([high_new], 120)
    wait_since([low], 60)
    running = queued(case, priority=Priority.NORMAL)
    claim_one(running, worker="w1@alpha/77")
    aborted = queued(case_in_db(session, name="flaky-infra"), priority=Priority.NORMAL)
    abort(aborted, "worker_lost: 3 attempts, none finished")
    register("w1@alpha", "alpha")
    register("w2@beta", "beta", slots=2, queues=("low",))
    with new_session() as s, s.begin():  # beta's worker went quiet long ago: stale
        s.execute(
            update(Worker)
            .where(Worker.name == "w2@beta")
            .values(heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
        )
    return {"running": running, "aborted": aborted}


def test_queue_depths_count_queued_executions_per_priority_with_the_oldest_wait(
    session: Session, queued: Queued
) -> None:
    case = case_in_db(session)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ids = {
        "high_old": queued(case, priority=Priority.HIGH),
        "high_new": queued(case, priority=Priority.HIGH),
        "low": queued(case, priority=Priority.LOW),
        "running": queued(case, priority=Priority.CRITICAL),
    }
    with new_session() as s, s.begin():
        for key, ago in (("high_old", 300), ("high_new", 20), ("low", 61.5)):
            s.execute(
                update(Execution)
                .where(Execution.id == ids[key])
                .values(queued_at=now - timedelta(seconds=ago))
            )
    claim_one(ids["running"])  # RUNNING: no longer waiting

    depths = {d.priority: d for d in queue_depths(session, now)}
    assert [d.priority for d in queue_depths(session, now)] == list(Priority)  # every one, highest first
    assert (depths[Priority.HIGH].waiting, depths[Priority.HIGH].oldest_wait_s) == (2, 300.0)
    assert depths[Priority.HIGH].oldest_queued_at == now - timedelta(seconds=300)
    assert (depths[Priority.LOW].waiting, depths[Priority.LOW].oldest_wait_s) == (1, 61.5)
    for empty in (Priority.CRITICAL, Priority.NORMAL, Priority.DEFERRED):
        assert (depths[empty].waiting, depths[empty].oldest_wait_s) == (0, None)
    assert depths[Priority.HIGH].queue == "high"


def test_the_page_shows_queue_depths_counts_workers_and_dead_letters(
    client: TestClient, user: MakeUser, seeded: dict[str, uuid.UUID]
) -> None:
    user(Role.VIEWER, "vera")  # any role may look
    sign_in(client, "vera")
    page = client.get("/ui/operations")
    assert page.status_code == 200
    text = html.unescape(page.text)

    high = row_of(text, 'data-priority="HIGH"')
    assert '<td class="waiting">2</td>' in high and re.search(r"5m 0\ds", high)  # the oldest: 5 minutes
    low = row_of(text, 'data-priority="LOW"')
    assert '<td class="waiting">1</td>' in low and re.search(r"(59\.\d|6\d\.\d) s", low)
    critical = row_of(text, 'data-priority="CRITICAL"')
    assert '<td class="waiting">0</td>' in critical
    # Only alpha is live: it gives "high" its 4 slots; beta (stale) no longer counts for "low".
    assert high.rstrip().endswith("<td>4</td>")
    assert "no live worker consumes it" in low

    assert re.search(r'data-count="QUEUED">3<', text) and re.search(r'data-count="RUNNING">1<', text)
    assert re.search(r'data-count="PAUSED">0<', text) and 'data-count="workers">1<' in text

    alpha = row_of(text, 'data-worker="w1@alpha"')
    assert '<td class="host">alpha</td>' in alpha and "ws-live" in alpha
    assert "<td>4</td>" in alpha and '<td class="busy">1</td>' in alpha and "high, normal" in alpha
    beta = row_of(text, 'data-worker="w2@beta"')
    assert "ws-stale" in beta and '<td class="busy">0</td>' in beta and "(1h 00m ago)" in beta

    dead = row_of(text, f'data-id="{seeded["aborted"]}"')
    assert f'href="/ui/executions/{seeded["aborted"]}">flaky-infra</a>' in dead
    assert "worker_lost: 3 attempts, none finished" in dead and "scheduler" in dead
    assert str(seeded["running"]) not in text.split("Dead letters")[1]  # only ABORTED ones


def test_the_figures_refresh_themselves(client: TestClient, user: MakeUser, queued: Queued) -> None:
    user(Role.VIEWER, "vera")
    sign_in(client, "vera")
    page = client.get("/ui/operations").text
    assert 'hx-get="/ui/operations/live"' in page and 'hx-trigger="every 3s"' in page
    assert "No worker has registered" in page and "None: nothing was given up on." in page
    queued(priority=Priority.CRITICAL)
    live = client.get("/ui/operations/live")
    assert live.status_code == 200 and live.text.startswith('<div id="ops-live"')
    assert '<td class="waiting">1</td>' in row_of(live.text, 'data-priority="CRITICAL"')
    assert "<html" not in live.text  # the fragment alone


def test_flower_is_linked_only_when_its_url_is_set(
    client: TestClient, user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user(Role.VIEWER, "vera")
    sign_in(client, "vera")
    assert "Flower" not in client.get("/ui/operations").text
    with flower_at(monkeypatch, "http://flower.example:5555"):
        assert '<a href="http://flower.example:5555"' in client.get("/ui/operations").text


def test_a_flower_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANVIL_FLOWER_URL", "javascript:alert(1)")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="ANVIL_FLOWER_URL must be an http"):
            get_settings()
    finally:
        monkeypatch.delenv("ANVIL_FLOWER_URL")
        get_settings.cache_clear()


def test_anonymous_visitors_are_sent_to_the_login(client: TestClient) -> None:
    response = client.get("/ui/operations", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


@contextmanager
def flower_at(monkeypatch: pytest.MonkeyPatch, url: str) -> Iterator[None]:
    """ANVIL_FLOWER_URL set for the duration (the settings are cached: cleared both ways)."""
    monkeypatch.setenv("ANVIL_FLOWER_URL", url)
    get_settings.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv("ANVIL_FLOWER_URL")
        get_settings.cache_clear()


def test_the_figures_read_the_same_on_sqlite_standalone_mode(sqlite_session: Session) -> None:
    from db.dead_letters import recent_dead_letters
    from db.queues import busy_slots, status_counts
    from tests.helpers import create_execution, make_case

    case = make_case(sqlite_session)
    now = datetime.now(UTC)
    with sqlite_session.begin():
        for priority in (Priority.LOW, Priority.LOW, Priority.CRITICAL):
            create_execution(
                sqlite_session, case=case, priority=priority, trigger_kind=TriggerKind.API, requested_by=None
            )
    depths = {d.priority: d for d in queue_depths(sqlite_session, now + timedelta(seconds=30))}
    assert depths[Priority.LOW].waiting == 2 and depths[Priority.CRITICAL].waiting == 1
    assert 29 <= (depths[Priority.LOW].oldest_wait_s or 0) <= 60
    assert status_counts(sqlite_session, (Status.QUEUED, Status.RUNNING))[Status.QUEUED] == 3
    assert busy_slots(sqlite_session) == {} and recent_dead_letters(sqlite_session, limit=5) == []
