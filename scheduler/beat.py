"""Celery beat scheduler that runs Anvil's tick in the beat process itself.

Running the tick here (not as a task on workers) keeps recovery going while every worker slot is
busy with long tests. Nothing is persisted locally: the database holds all scheduling state. The
beat also runs the webhook sender, on a thread of its own (scheduler/deliveries.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import Scheduler

from anvil.settings import get_settings
from scheduler.deliveries import start_sender
from scheduler.tick import run_tick
from scheduler.tick_metrics import record_tick

log = logging.getLogger("anvil.beat")


class AnvilScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._interval = get_settings().tick_interval_s
        self._next = 0.0
        self._sender = start_sender()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now >= self._next:
            try:
                report = run_tick()
            except Exception:  # a failed tick (database down) is retried on the next one
                log.exception("scheduler tick failed")
                report = None
            record_tick(report, time.monotonic() - now)
            self._next = time.monotonic() + self._interval
        delay = super().tick(*args, **kwargs)
        return max(0.0, min(delay, self._next - time.monotonic()))
