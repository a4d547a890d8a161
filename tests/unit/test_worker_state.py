"""anvil/domain/workers.py: a worker's state from its last heartbeat, with ``now`` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.workers import (
    FORGET_AFTER_DAYS,
    WorkerState,
    forget_before,
    live_since,
    stale_after,
    worker_state,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("heartbeat_at", "stopped_at", "heartbeat_s", "expected"),
    [
        (NOW, None, 10, WorkerState.LIVE),
        (ago(9), None, 10, WorkerState.LIVE),
        # Two missed heartbeats are a slow database or a busy host, not a lost worker.
        (ago(25), None, 10, WorkerState.LIVE),
        # Exactly three intervals: still live; a moment more: stale.
        (ago(30), None, 10, WorkerState.LIVE),
        (ago(30.001), None, 10, WorkerState.STALE),
        (ago(3600), None, 10, WorkerState.STALE),
        # The interval is the setting's: 3 s beats make 10 s without one stale.
        (ago(10), None, 3, WorkerState.STALE),
        (ago(8), None, 3, WorkerState.LIVE),
        # Stopped wins, whether it stopped just now or long ago.
        (NOW, NOW, 10, WorkerState.STOPPED),
        (ago(3600), ago(3590), 10, WorkerState.STOPPED),
        # A heartbeat a skewed clock put in the future is live.
        (NOW + timedelta(seconds=5), None, 10, WorkerState.LIVE),
    ],
)
def test_state(
    heartbeat_at: datetime, stopped_at: datetime | None, heartbeat_s: float, expected: WorkerState
) -> None:
    assert (
        worker_state(heartbeat_at=heartbeat_at, stopped_at=stopped_at, now=NOW, heartbeat_s=heartbeat_s)
        == expected
    )


def test_stale_after_three_intervals_and_live_since_agrees_with_the_state() -> None:
    assert stale_after(10) == timedelta(seconds=30)
    since = live_since(NOW, heartbeat_s=10)
    assert since == ago(30)
    assert worker_state(heartbeat_at=since, stopped_at=None, now=NOW, heartbeat_s=10) is WorkerState.LIVE


def test_rows_are_forgotten_a_week_after_their_last_heartbeat() -> None:
    assert FORGET_AFTER_DAYS == 7
    assert forget_before(NOW) == NOW - timedelta(days=7)
