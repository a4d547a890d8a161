"""Redis paused (``CLIENT PAUSE 20000 ALL``) and PostgreSQL paused (SIGSTOP of the
postmaster and every backend for 20 s), while submissions and reads keep coming from several threads.

A paused service accepts connections and data but answers nothing: whatever waits for it without a
deadline hangs. The API must still answer every request within 10 s (the client waits 15 s): 201/200,
or 503 with a problem-details body, never a 500 and never a hang. Executions running during the
pause (detector cases of a few seconds on two workers) keep running on the workers' side while the
database or broker cannot hear them: after the resume, nothing may run twice at once (an expired
lease must not let a second attempt start next to the first), nothing is lost or traced twice.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from tests.faults.conftest import FaultStack, FaultStackFactory, pool_children
from tests.faults.ledger import Submission, assert_clean, report
from tests.faults.services import PgCluster

pytestmark = pytest.mark.fault

PAUSE_S = 20.0
BEFORE_S, AFTER_S = 3.0, 5.0
SUBMITTERS, READERS = 3, 1
PACE_S = 0.3
CLIENT_TIMEOUT_S = 15.0  # longer than the bound below: a hang shows up as a slow answer, not an error
ANSWER_WITHIN_S = 10.0
RUNNING = 4  # detector runs alive when the pause begins: every slot of 2 workers x 2
RUN_S = 6.0


@dataclass
class Read:
    started: float
    status_code: int | None
    latency_s: float
    body: str


@dataclass
class Traffic:
    """Submissions (into the stack's ledger) and reads of accepted executions, from several threads."""

    stack: FaultStack
    case_id: str
    client: httpx.Client
    reads: list[Read] = field(default_factory=list)
    starts: dict[int, float] = field(default_factory=dict)  # id(Submission) -> when it was sent
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submitter(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            entry = self.stack.ledger.submit(self.client, self.case_id)
            with self._lock:
                self.starts[id(entry)] = started
            time.sleep(PACE_S)

    def reader(self) -> None:
        while not self.stop.is_set():
            accepted = self.stack.ledger.accepted
            if accepted:
                self.read(accepted[-1])
            time.sleep(PACE_S)

    def read(self, execution_id: str) -> None:
        started = time.monotonic()
        try:
            response = self.client.get(f"/api/v1/executions/{execution_id}")
            code, body = response.status_code, response.text[:300]
        except httpx.HTTPError as exc:
            code, body = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.reads.append(Read(started, code, time.monotonic() - started, body))

    def run(self, fault: Callable[[], tuple[float, float]]) -> tuple[float, float]:
        threads = [threading.Thread(target=self.submitter, daemon=True) for _ in range(SUBMITTERS)]
        threads += [threading.Thread(target=self.reader, daemon=True) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(BEFORE_S)
            window = fault()
            time.sleep(AFTER_S)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=CLIENT_TIMEOUT_S + 5)
        return window

    def sent_at(self, entry: Submission) -> float:
        return self.starts.get(id(entry), 0.0)


def is_problem_503(body: str) -> bool:
    try:
        problem = json.loads(body)
    except ValueError:
        return False
    return isinstance(problem, dict) and problem.get("status") == 503 and bool(problem.get("title"))


def phase_of(started: float, window: tuple[float, float]) -> str:
    paused_at, resumed_at = window
    if started < paused_at:
        return "before"
    return "paused" if started < resumed_at else "after"


def latency_figures(traffic: Traffic, window: tuple[float, float]) -> dict[str, Any]:
    """Max latency per phase (by when the request was sent), over submissions and reads together."""
    samples = [(traffic.sent_at(e), e.latency_s) for e in traffic.stack.ledger.entries]
    samples += [(r.started, r.latency_s) for r in traffic.reads]
    figures: dict[str, Any] = {}
    for phase in ("before", "paused", "after"):
        latencies = [lat for started, lat in samples if phase_of(started, window) == phase]
        figures[f"max_latency_{phase}_s"] = round(max(latencies, default=0.0), 2)
        figures[f"requests_{phase}"] = len(latencies)
    return figures


def start_running(stack: FaultStack) -> list[Submission]:
    """RUNNING detector runs filling every slot, so the pause catches them mid-run."""
    long_case = stack.detector_case(RUN_S)
    runs = [stack.ledger.submit(stack.client, long_case["id"]) for _ in range(RUNNING)]
    for run in runs:
        stack.wait_status(run.execution_id or "", {"RUNNING", "PASSED"})
    return runs


def run_fault(
    stack: FaultStack, name: str, fault: Callable[[], tuple[float, float]]
) -> tuple[dict[str, Any], Traffic]:
    case = stack.detector_case(0.2)
    client = httpx.Client(
        base_url=stack.api_url, headers=dict(stack.client.headers), timeout=CLIENT_TIMEOUT_S
    )
    traffic = Traffic(stack, case["id"], client)
    long_runs = start_running(stack)
    try:
        window = traffic.run(fault)
    finally:
        client.close()
    figures = stack.check(timeout=150)
    entries = stack.ledger.entries
    figures.update(
        paused_s=round(window[1] - window[0], 1),
        **latency_figures(traffic, window),
        submissions_503=sum(1 for e in entries if e.status_code == 503),
        reads=len(traffic.reads),
        reads_503=sum(1 for r in traffic.reads if r.status_code == 503),
        long_runs=[f"{stack.get(e.execution_id or '')['status']}" for e in long_runs],
        published_again=stack.sql("SELECT count(*) FROM executions WHERE publish_count > 1")[0][0],
    )
    report(name, figures)
    return figures, traffic


def assert_answers(figures: dict[str, Any], traffic: Traffic) -> None:
    entries = traffic.stack.ledger.entries
    hung = [e for e in entries if e.status_code is None] + [r for r in traffic.reads if r.status_code is None]
    assert not hung, f"requests without an answer within {CLIENT_TIMEOUT_S}s: {hung[:3]}"
    bad_posts = [e for e in entries if e.status_code not in (201, 503)]
    bad_reads = [r for r in traffic.reads if r.status_code not in (200, 503)]
    assert not bad_posts and not bad_reads, f"answers other than 201/200/503: {bad_posts[:3]} {bad_reads[:3]}"
    not_problems = [e.error for e in entries if e.status_code == 503 and not is_problem_503(e.error or "")]
    not_problems += [r.body for r in traffic.reads if r.status_code == 503 and not is_problem_503(r.body)]
    assert not not_problems, f"503 without a problem-details body: {not_problems[:3]}"
    slow = {k: v for k, v in figures.items() if k.startswith("max_latency_") and v > ANSWER_WITHIN_S}
    assert not slow, f"requests answered after more than {ANSWER_WITHIN_S}s: {slow}; figures: {figures}"
    assert figures["requests_paused"] >= 10, figures
    assert figures["accepted"] >= 20, figures


def pause_redis(stack: FaultStack) -> tuple[float, float]:
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=PAUSE_S + 10)
    try:
        paused_at = time.monotonic()
        client.execute_command("CLIENT", "PAUSE", str(int(PAUSE_S * 1000)), "ALL")
        time.sleep(PAUSE_S)
        client.ping()  # answers once the pause has expired
        return paused_at, time.monotonic()
    finally:
        client.close()


def cluster_pids(pg: PgCluster) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    return [postmaster, *pool_children(postmaster)]


def signal_all(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def pause_postgres(stack: FaultStack) -> tuple[float, float]:
    assert stack.pg is not None
    pids = cluster_pids(stack.pg)[:1]
    try:
        # The postmaster first: stopped, it forks no new backend that the list below would miss.
        signal_all(pids, signal.SIGSTOP)
        pids = cluster_pids(stack.pg)
        signal_all(pids, signal.SIGSTOP)
        paused_at = time.monotonic()
        time.sleep(PAUSE_S)
    finally:
        signal_all(pids[::-1], signal.SIGCONT)
    return paused_at, time.monotonic()


def test_redis_paused_for_20s(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    figures, traffic = run_fault(stack, "fault_redis_paused_20s", lambda: pause_redis(stack))
    assert_answers(figures, traffic)
    # The pause was felt: publishes gave up on the paused Redis, and the reconciler published again.
    assert figures["published_again"] >= 1, figures
    assert_clean(figures)


def test_postgres_paused_for_20s(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    figures, traffic = run_fault(stack, "fault_postgres_paused_20s", lambda: pause_postgres(stack))
    assert_answers(figures, traffic)
    # The pause must have been felt: requests that needed the database were refused meanwhile.
    assert figures["submissions_503"] + figures["reads_503"] >= 1, figures
    assert_clean(figures)
