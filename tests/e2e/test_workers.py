"""The worker registry with real processes: an `anvil worker` registers itself when it is ready (its
name, slots and queues), the API and `anvil workers --json` list it live, and after a graceful
shutdown it is listed stopped and its slots no longer count."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime
from typing import Any

from tests.e2e.conftest import StackFactory
from tests.e2e.test_cli import anvil, token_of


def test_a_worker_is_listed_live_with_its_slots_and_queues_then_stopped(make_stack: StackFactory) -> None:
    # Beats every second, so the test sees the heartbeat thread at work without a long wait.
    stack = make_stack(workers=0, beat=False, env={"ANVIL_WORKER_HEARTBEAT_S": "1"})
    worker = stack.start_worker(concurrency=3, queues="critical,high")
    name = f"e2e1@{socket.gethostname()}"

    # Registered before Celery logs "ready." (the signal handler runs first): no waiting needed.
    body = stack.client.get("/api/v1/workers").json()
    (listed,) = body["items"]
    assert listed["name"] == name and listed["state"] == "live"
    assert listed["slots"] == 3 and listed["queues"] == ["critical", "high"]
    assert listed["host"] == socket.gethostname() and listed["pid"] == worker.proc.pid
    assert body["totals"]["live_workers"] == 1
    assert body["totals"]["live_slots"] == {"critical": 3, "high": 3, "normal": 0, "low": 0, "deferred": 0}

    beaten = until(lambda: _only(stack.client.get("/api/v1/workers").json()), _renewed)
    assert beaten["state"] == "live" and beaten["started_at"] == listed["started_at"]

    cli = anvil("workers", "--json", api_url=stack.api_url, token=token_of(stack))
    assert cli.returncode == 0, cli.stderr
    assert [(w["name"], w["state"], w["slots"]) for w in json.loads(cli.stdout)["items"]] == [
        (name, "live", 3)
    ]

    stack.stop_worker(worker)
    assert worker.proc.returncode == 0  # a warm shutdown, not a kill

    body = stack.client.get("/api/v1/workers").json()
    (listed,) = body["items"]
    assert listed["state"] == "stopped" and listed["stopped_at"] is not None
    assert body["totals"]["live_workers"] == 0 and body["totals"]["live_slots"]["critical"] == 0
    table = anvil("workers", api_url=stack.api_url, token=token_of(stack))
    assert table.returncode == 0, table.stderr
    assert name in table.stdout and "stopped" in table.stdout


def _only(body: dict[str, Any]) -> dict[str, Any]:
    (item,) = body["items"]
    return dict(item)


def _renewed(worker: dict[str, Any]) -> bool:
    at = {k: datetime.fromisoformat(worker[k]) for k in ("heartbeat_at", "started_at")}
    return at["heartbeat_at"] > at["started_at"]


def until(read: Any, done: Any, *, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``read()`` until ``done`` holds for what it returned; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if done(found):
            return dict(found)
        assert time.monotonic() < deadline, f"still {found} after {timeout}s"
        time.sleep(0.1)
