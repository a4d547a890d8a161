"""Fault: database connections killed every 5 s (pg_terminate_backend) while clients submit with retries.

For about 35 s a thread terminates every backend of the stack's database (the API's, the workers',
the beat's) every 5 s. Meanwhile submitters send 300 case submissions, each with its own
Idempotency-Key, and retry the same key (same body) on any answer but 201 until they get one, as a
careful client would. The detector's own connections are spared (application_name): it is the
witness of double runs, not the system under test, and a killed witness would fail its step.

Checks: never a 500 (a killed connection is a 503 to retry); for every key exactly one execution row
holds it, with the id the 201 returned; asking again with the key returns that same id (replayed);
nothing lost, every execution finished, plus the ledger's invariants.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import Submission, assert_clean, report

# 110-300 s here; more on a slow, loaded machine (CI runs three fault files at once).
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

KEYS = 300
THREADS = 4
PACE_S = 0.35  # per thread between keys: about 9 submissions a second, so they span the kills
KILL_EVERY_S = 5.0
KILL_FOR_S = 37.0  # at least 7 rounds of kills
MAX_TRIES = 40
DETECTOR_APP = "fault-detector"
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name <> %s"
)


def test_connection_kills_during_idempotent_submissions(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    assert stack.pg is not None
    stack.detector_url += f"?application_name={DETECTOR_APP}"
    case = stack.detector_case(0.2)
    dbname = str(make_url(stack.database_url).database)
    keys = [f"fault-key-{uuid.uuid4().hex}" for _ in range(KEYS)]
    answers: dict[str, list[Submission]] = defaultdict(list)
    next_key = iter(keys)
    take = threading.Lock()
    stop = threading.Event()
    kills: list[int] = []
    replays_on_retry: list[str] = []

    def killer() -> None:
        with psycopg.connect(stack.pg.url(dbname), autocommit=True) as conn:  # type: ignore[union-attr]
            while not stop.wait(KILL_EVERY_S):
                row = conn.execute(TERMINATE, (dbname, DETECTOR_APP)).fetchone()
                kills.append(int(row[0]) if row else 0)

    def submitter() -> None:
        while True:
            with take:
                key = next(next_key, None)
            if key is None:
                return
            _submit_until_201(stack, case["id"], key, answers[key], replays_on_retry)
            time.sleep(PACE_S)

    kill_thread = threading.Thread(target=killer, daemon=True)
    kill_thread.start()
    started = time.monotonic()
    threads = [threading.Thread(target=submitter, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # Keep killing for the whole window even when the submissions were quicker.
    time.sleep(max(0.0, KILL_FOR_S - (time.monotonic() - started)))
    stop.set()
    kill_thread.join(timeout=30)
    window_s = time.monotonic() - started

    figures = stack.check(timeout=300)
    returned = {key: _first_201(got) for key, got in answers.items()}
    rows = stack.sql(
        "SELECT idempotency_key, count(*) AS n, min(id::text) AS id FROM executions GROUP BY idempotency_key"
    )
    by_key = {row.idempotency_key: (row.n, row.id) for row in rows}
    replays = _replay(stack, case["id"], keys)
    retried = [key for key, got in answers.items() if len(got) > 1]
    figures.update(
        keys=KEYS,
        window_s=round(window_s, 1),
        kill_rounds=len(kills),
        backends_terminated=sum(kills),
        keys_retried=len(retried),
        retries_answered_by_replay=len(replays_on_retry),
        max_tries=max(len(got) for got in answers.values()),
        keys_without_201=sum(1 for ident in returned.values() if ident is None),
        keys_without_row=sum(1 for key in keys if key not in by_key),
        keys_with_several_rows=sum(1 for n, _ in by_key.values() if n > 1),
        rows_without_key=by_key.get(None, (0, None))[0],
        id_mismatches=sum(1 for key in keys if by_key.get(key, (0, None))[1] != returned[key]),
        replay_mismatches=sum(1 for key in keys if replays[key] != returned[key]),
    )
    report("fault_connection_kills_idempotent_submits", figures)

    codes = stack.ledger.codes()
    assert 500 not in codes, f"500s: {[e.error for e in stack.ledger.entries if e.status_code == 500][:3]}"
    assert set(codes) <= {201, 503}, f"answers other than 201/503: {codes}"
    assert figures["kill_rounds"] >= 6 and figures["backends_terminated"] >= figures["kill_rounds"], figures
    assert figures["keys_without_201"] == 0, figures
    assert figures["keys_without_row"] == 0 and figures["keys_with_several_rows"] == 0, figures
    assert figures["rows_without_key"] == 0 and figures["executions"] == KEYS, figures
    assert figures["id_mismatches"] == 0 and figures["replay_mismatches"] == 0, figures
    assert_clean(figures)


def _submit_until_201(
    stack: FaultStack, case_id: str, key: str, got: list[Submission], replays_on_retry: list[str]
) -> None:
    """Post with ``key`` until a 201, the same body each time; every answer goes in the ledger too."""
    for _ in range(MAX_TRIES):
        entry, replayed = _post(stack.client, case_id, key)
        got.append(entry)
        with stack.ledger._lock:
            stack.ledger.entries.append(entry)
        if entry.status_code == 201:
            # A retry answered from the first try's row: that try committed although its answer was lost.
            replays_on_retry.extend([key] if replayed and len(got) > 1 else [])
            return
        time.sleep(0.5)


def _first_201(got: list[Submission]) -> str | None:
    return next((a.execution_id for a in got if a.status_code == 201), None)


def _post(client: httpx.Client, case_id: str, key: str) -> tuple[Submission, bool]:
    started = time.monotonic()
    try:
        response = client.post(
            "/api/v1/executions/case",
            json={"test_case_id": case_id, "priority": "NORMAL"},
            headers={"Idempotency-Key": key},
        )
    except httpx.HTTPError as exc:
        return Submission(None, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}"), False
    ok = response.status_code == 201
    entry = Submission(
        response.status_code,
        response.json()["id"] if ok else None,
        time.monotonic() - started,
        None if ok else response.text[:300],
    )
    return entry, response.headers.get("Idempotent-Replayed") == "true"


def _replay(stack: FaultStack, case_id: str, keys: list[str]) -> dict[str, Any]:
    """Each key once more, after the kills: the answer must be the first execution, replayed."""
    out: dict[str, Any] = {}
    for key in keys:
        response = stack.client.post(
            "/api/v1/executions/case",
            json={"test_case_id": case_id, "priority": "NORMAL"},
            headers={"Idempotency-Key": key},
        )
        replayed = response.status_code == 201 and response.headers.get("Idempotent-Replayed") == "true"
        out[key] = response.json()["id"] if replayed else f"HTTP {response.status_code}, not replayed"
    return out
