"""Fault: Redis restarted ten times while tests run, without and then with an append-only file.

A steady stream of executions runs on two workers. Ten times, Redis goes away for a second and comes
back on the same port, alternately SIGKILLed and shut down gracefully (``SHUTDOWN``). The first five
restarts run without persistence, so Redis comes back empty (the fifth comes back with AOF on); the
last five with ``--appendonly yes``, so Redis comes back with what it held: messages still waiting,
and copies of messages workers had taken (``unacked``). A sentinel key shows which of the two each
restart was. Nobody restarts the API, the workers or beat: they must reconnect on their own.

After each restart a CRITICAL canary is submitted and must be PASSED within 30 s of its submission.
At the end every accepted execution finished, none ran twice and no step was written twice.

The second test replays, step by step, what made a worker die of such a restart before
workers/broker.py (a worker died in 2 of 5 runs of the first test): Celery's clean-up of a lost
connection on a channel holding an unacknowledged message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.common import ignore_errors
from kombu.message import Message

from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import assert_clean, report
from tests.faults.services import RedisServer

pytestmark = pytest.mark.fault

RESTARTS = 10
AOF_FROM = 5  # restarts 0..4 without persistence, 5..9 with it (restart 4 comes back with AOF on)
DOWN_S = 1.0
CANARY_LIMIT_S = 30.0
STREAM_EVERY_S = 0.3  # the steady stream: about 3 submissions a second of 0.3 s tests on 4 slots
BETWEEN_S = 3.0  # running undisturbed between a canary's PASSED and the next restart
SENTINEL = "fault:sentinel"


class Stream:
    """Submits one execution every ``STREAM_EVERY_S`` until stopped, whatever Redis is doing."""

    def __init__(self, stack: FaultStack, case_id: str) -> None:
        self.stack, self.case_id = stack, case_id
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(STREAM_EVERY_S):
            self.stack.ledger.submit(self.stack.client, self.case_id)

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(60)


def restart(server: RedisServer, number: int) -> dict[str, Any]:
    """Take Redis down (kill or SHUTDOWN) for DOWN_S and start it again; what survived the restart."""
    client = redis.Redis.from_url(server.url)
    client.set(SENTINEL, number)
    keys_before = client.dbsize()
    client.close()
    how = "kill" if number % 2 == 0 else "shutdown"
    aof = server.appendonly
    if how == "kill":
        server.kill()
    else:
        server.shutdown()
    time.sleep(DOWN_S)
    if number + 1 == AOF_FROM:
        server.appendonly = True
    server.start()
    client = redis.Redis.from_url(server.url)
    kept = client.get(SENTINEL) is not None
    keys_after = client.dbsize()
    client.close()
    return {"n": number + 1, "how": how, "aof": aof, "kept": kept, "keys": [keys_before, keys_after]}


def canary(stack: FaultStack, case_id: str) -> float:
    """Submit a CRITICAL execution; seconds from its submission until the API shows it PASSED."""
    submitted = time.monotonic()
    entry = stack.ledger.submit(stack.client, case_id, priority="CRITICAL")
    assert entry.status_code == 201, f"canary refused: {entry.status_code} {entry.error}"
    stack.wait_status(entry.execution_id or "", {"PASSED"}, timeout=CANARY_LIMIT_S)
    return time.monotonic() - submitted


def test_redis_restarted_ten_times_while_tests_run(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=2, concurrency=2)
    server = stack.redis_server
    assert server is not None
    steady = stack.detector_case(0.3)
    canary_case = stack.detector_case(0.1)
    restarts: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with Stream(stack, steady["id"]):
            time.sleep(BETWEEN_S)
            for number in range(RESTARTS):
                restarts.append(restart(server, number))
                restarts[-1]["canary_s"] = round(canary(stack, canary_case["id"]), 1)
                time.sleep(BETWEEN_S)
        figures = stack.check(timeout=90)
    finally:
        # The session's Redis goes back to no persistence (and empty) for the tests after this one.
        server.appendonly = False
        server.kill()
        server.start()
    canary_waits = [r["canary_s"] for r in restarts]
    figures.update(
        restarts=len(restarts),
        with_aof=sum(r["aof"] for r in restarts),
        canary_max_s=max(canary_waits),
        canary_waits_s=canary_waits,
        submit_latency_max_s=round(max(e.latency_s for e in stack.ledger.entries), 2),
        republished=stack.sql("SELECT count(*) FROM executions WHERE publish_count > 1")[0][0],
        detail=restarts,
        elapsed_s=round(time.monotonic() - started, 1),
    )
    report("fault_redis_restarted_ten_times", figures)

    # The restarts were what they claim: AOF keeps the data across a graceful restart, none is kept without.
    assert not any(r["kept"] for r in restarts if not r["aof"]), restarts
    assert all(r["kept"] for r in restarts if r["aof"] and r["how"] == "shutdown"), restarts
    assert figures["with_aof"] == RESTARTS - AOF_FROM
    # PostgreSQL was up throughout: every submission was accepted, and every one of them PASSED.
    assert figures["http_codes"] == {"201": figures["submitted"]}, figures["http_codes"]
    assert figures["statuses"] == {"PASSED": figures["executions"]}, figures["statuses"]
    assert all(w.alive() for w in stack.workers), "a worker died of a Redis restart"
    assert_clean(figures)


def test_a_channel_holding_a_message_fails_as_a_lost_connection_after_redis_died(
    redis_server: RedisServer,
) -> None:
    from workers import broker

    conn = Connection(redis_server.url, transport=broker.TRANSPORT)
    lost_connection = conn.connection_errors
    held: list[Message] = []
    try:
        queue = Queue("normal")
        pidbox = Queue("fault.pidbox", Exchange("fault.pidbox", type="fanout"), auto_delete=True)
        with conn.Producer() as producer:
            producer.publish({"id": "x"}, routing_key="normal", declare=[queue])
        channel = conn.default_channel
        consumer = conn.Consumer([queue, pidbox], channel=channel, on_message=held.append)
        consumer.qos(prefetch_count=1)
        consumer.consume()
        conn.drain_events(timeout=5)
        assert len(held) == 1
        channel._brpop_start()  # a worker's event loop always has a BRPOP pending
        redis_server.kill()
        # Celery 5.7 on a lost connection (Consumer.on_connection_error_after_connected): collect
        # (which detaches the transport), then close ignoring connection errors only. With kombu's
        # own channel the close raised AttributeError, and the worker stopped.
        with contextlib.suppress(Exception):
            conn.collect(socket_timeout=2)
        ignore_errors(conn, conn.close)
        # The test that was running finishes: its acknowledgement fails as a lost connection, which
        # Celery logs ("Couldn't ack"), instead of an AttributeError in the worker's event loop.
        with pytest.raises(lost_connection):
            held[0].ack()
    finally:
        redis_server.kill()
        redis_server.start()
