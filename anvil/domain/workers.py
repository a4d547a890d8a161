"""The worker registry's vocabulary: what a worker process reports about itself, and its state
judged from its last heartbeat. Pure: ``now`` is passed in.

A worker is live while it heartbeats (every ANVIL_WORKER_HEARTBEAT_S), stale once it missed
MISSED_HEARTBEATS in a row (killed, host gone, database unreachable from it), stopped once it shut
down gracefully. Only live workers' slots count as capacity (db/workers.py: ``live_slots``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class WorkerState(StrEnum):
    LIVE = "live"
    STALE = "stale"
    STOPPED = "stopped"


# A worker this many heartbeats late is stale: its slots no longer count.
MISSED_HEARTBEATS = 3
# Stopped and stale workers are forgotten this long after their last heartbeat (the retention duty).
FORGET_AFTER_DAYS = 7


@dataclass(frozen=True)
class WorkerProcess:
    """What a running worker process registers: its Celery node name (unique), where it runs, how
    many tests it runs at once (its pool's concurrency; with autoscale, the maximum) and the queues
    it consumes, highest priority first."""

    name: str
    host: str
    pid: int
    slots: int
    queues: tuple[str, ...]
    version: str


def stale_after(heartbeat_s: float) -> timedelta:
    """How long a worker may go without a heartbeat before it is stale."""
    return timedelta(seconds=heartbeat_s * MISSED_HEARTBEATS)


def live_since(now: datetime, *, heartbeat_s: float) -> datetime:
    """The oldest last heartbeat a live worker may have at ``now``."""
    return now - stale_after(heartbeat_s)


def worker_state(
    *, heartbeat_at: datetime, stopped_at: datetime | None, now: datetime, heartbeat_s: float
) -> WorkerState:
    if stopped_at is not None:
        return WorkerState.STOPPED
    if heartbeat_at < live_since(now, heartbeat_s=heartbeat_s):
        return WorkerState.STALE
    return WorkerState.LIVE


def forget_before(now: datetime) -> datetime:
    """Workers whose last heartbeat is older than this are deleted (a live one heartbeats far more
    often; a stopped one's last heartbeat is at or before it stopped)."""
    return now - timedelta(days=FORGET_AFTER_DAYS)
