"""Celery task events (what Flower shows) are sent only while enabled by broadcast.

A real `anvil worker` starts with task events off and its worker events (heartbeats) on; the
`enable_events` broadcast Flower sends every 5 s turns task events on, `disable_events` off again.
The test listens on the broker's event exchange as Flower does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from celery import Celery

from tests.e2e.conftest import Stack, StackFactory

Event = dict[str, Any]
WAIT_S = 30.0


class EventLog:
    """Every event on the broker's event exchange, received in a thread, like a monitor."""

    def __init__(self, app: Celery) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._connection = app.connection()
        self._receiver = app.events.Receiver(self._connection, handlers={"*": self._on_event})
        self._thread = threading.Thread(target=self._receiver.capture, kwargs={"wakeup": False}, daemon=True)

    def __enter__(self) -> EventLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._connection.release()

    def _on_event(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, match: Callable[[Event], bool], *, after: int = 0) -> int:
        """Index of the first event from index ``after`` on that matches; fails after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                found = next((i for i in range(after, len(self.events)) if match(self.events[i])), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no matching event within {WAIT_S}s; got {self.types()}"
                self._changed.wait(remaining)

    def settled(self, processed: int) -> None:
        """Return once the worker has finished its first ``processed`` tasks and sent whatever events
        they cause: its heartbeat says none is active, and one more heartbeat follows (task events
        are buffered and flushed on the worker's next loop turn; heartbeats are not)."""
        idle = self.wait_for(
            lambda e: e["type"] == "worker-heartbeat" and e["processed"] >= processed and e["active"] == 0
        )
        self.wait_for(lambda e: e["type"] == "worker-heartbeat", after=idle + 1)

    def task_events(self) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e["type"].startswith("task-")]

    def types(self) -> list[str]:
        with self._changed:
            return [e["type"] for e in self.events]


def run_true(stack: Stack, case_id: str) -> str:
    execution = stack.submit(case_id)
    assert stack.wait_final(execution["id"])["status"] == "PASSED"
    return str(execution["id"])


def test_a_worker_sends_task_events_only_between_enable_and_disable(make_stack: StackFactory) -> None:
    from anvil.settings import Settings
    from workers.celery_app import make_celery

    # No beat: its reconciler could publish an execution twice and add tasks to the count.
    stack = make_stack(beat=False)
    app = make_celery(Settings(redis_url=stack.redis_url, database_url=stack.database_url))
    case = stack.create_case([{"name": "true", "run": ["true"]}])
    try:
        with EventLog(app) as log:
            # Listening, and the worker is seen from its heartbeats before any task event is on.
            first = log.wait_for(lambda e: e["type"] == "worker-heartbeat")
            worker = log.events[first]["hostname"]
            assert worker.startswith("e2e1@")

            quiet = run_true(stack, case["id"])
            log.settled(processed=1)
            assert log.task_events() == [], f"task events with nobody having asked ({quiet})"

            # What Flower broadcasts while it runs.
            assert app.control.enable_events(reply=True, timeout=5) == [
                {worker: {"ok": "task events enabled"}}
            ]
            watched = run_true(stack, case["id"])
            received = log.wait_for(lambda e: e["type"] == "task-received" and watched in e["args"])
            task_id = log.events[received]["uuid"]
            log.wait_for(lambda e: e["type"] == "task-started" and e["uuid"] == task_id)
            log.wait_for(lambda e: e["type"] == "task-succeeded" and e["uuid"] == task_id)
            assert {e["hostname"] for e in log.task_events()} == {worker}

            assert app.control.disable_events(reply=True, timeout=5) == [
                {worker: {"ok": "task events disabled"}}
            ]
            before = len(log.task_events())
            unwatched = run_true(stack, case["id"])
            log.settled(processed=3)
            after = log.task_events()
            assert len(after) == before, f"task events after disable_events: {after[before:]}"
            assert not any(unwatched in str(e.get("args")) for e in after)
    finally:
        app.close()
