"""The metrics PostgreSQL knows, for the API's ``/metrics``: queue depth and oldest wait per
priority, executions per live status, live workers with their slots and busy slots.

Read with the grouped queries of db/queues.py and db/workers.py, at most once per ``MAX_AGE_S``
per API process: scrapes in between (several Prometheus servers, a dashboard's refresh) are served
from the last reading. Only the API exposes these, so a query never runs once per worker or beat,
and Prometheus never sees the same figure twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from anvil.domain.states import Status
from anvil.domain.workers import WorkerState
from db import workers
from db.queues import QueueDepth, busy_slots, queue_depths, status_counts
from db.session import new_session
from db.sql import read_db_now

log = logging.getLogger("anvil.api")

MAX_AGE_S = 5.0
COUNTED = (Status.SCHEDULED, Status.QUEUED, Status.RUNNING, Status.PAUSED)


@dataclass(frozen=True)
class Reading:
    depths: list[QueueDepth] = field(default_factory=list)
    statuses: dict[Status, int] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)  # live worker -> its slots
    busy: dict[str, int] = field(default_factory=dict)  # worker -> RUNNING executions
    up: bool = False


def read_database() -> Reading:
    """One reading, in one short read-only transaction."""
    with new_session() as session, session.begin():
        now = read_db_now(session)
        live = workers.list_workers(session, now=now, state=WorkerState.LIVE)
        return Reading(
            depths=queue_depths(session, now),
            statuses=status_counts(session, COUNTED),
            slots={w.name: w.slots for w in live},
            busy=dict(busy_slots(session)),
            up=True,
        )


class DatabaseCollector:
    """The last reading as gauges; ``refresh`` takes a new one when it is older than ``max_age_s``."""

    def __init__(self, max_age_s: float = MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self.reading = Reading()
        self.read_at = float("-inf")
        self.lock = threading.Lock()

    def stale(self) -> bool:
        return time.monotonic() - self.read_at >= self.max_age_s

    def refresh(self) -> None:
        """Read the database unless another scrape just did (blocking: call it on a thread)."""
        with self.lock:
            if not self.stale():
                return
            try:
                self.reading = read_database()
            except Exception as exc:  # the database is down: say so in anvil_database_up
                log.warning("metrics: could not read the database: %s", exc)
                self.reading = Reading()
            self.read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        reading = self.reading
        up = GaugeMetricFamily(
            "anvil_database_up", "1 when the API's last metrics reading of PostgreSQL succeeded, else 0."
        )
        up.add_metric([], 1.0 if reading.up else 0.0)
        yield up
        if not reading.up:
            return
        depth = GaugeMetricFamily(
            "anvil_queue_depth", "QUEUED executions per priority (from PostgreSQL).", labels=["priority"]
        )
        oldest = GaugeMetricFamily(
            "anvil_queue_oldest_wait_seconds",
            "How long the oldest QUEUED execution of each priority has waited (0 when none waits).",
            labels=["priority"],
        )
        for d in reading.depths:
            depth.add_metric([d.priority.value], d.waiting)
            oldest.add_metric([d.priority.value], d.oldest_wait_s or 0.0)
        statuses = GaugeMetricFamily(
            "anvil_executions_active",
            "Executions SCHEDULED, QUEUED, RUNNING or PAUSED right now, by status.",
            labels=["status"],
        )
        for status, count in reading.statuses.items():
            statuses.add_metric([status.value], count)
        live = GaugeMetricFamily("anvil_workers_live", "Worker processes with a fresh heartbeat.")
        live.add_metric([], len(reading.slots))
        slots = GaugeMetricFamily(
            "anvil_worker_slots", "Test slots of each live worker (its concurrency).", labels=["worker"]
        )
        busy = GaugeMetricFamily(
            "anvil_worker_busy_slots", "RUNNING executions held by each worker.", labels=["worker"]
        )
        for name, count in sorted(reading.slots.items()):
            slots.add_metric([name], count)
        for name in sorted(reading.slots.keys() | reading.busy.keys()):
            busy.add_metric([name], reading.busy.get(name, 0))
        yield from (depth, oldest, statuses, live, slots, busy)
