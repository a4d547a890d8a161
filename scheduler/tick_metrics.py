"""What a scheduler tick did, counted in the beat's metrics (anvil/metrics.py) from its TickReport."""

from __future__ import annotations

from anvil import metrics
from scheduler.tick import TickReport


def record_tick(report: TickReport | None, seconds: float) -> None:
    """``report`` None: the tick failed (its sweeps' work is counted only when it ran)."""
    if report is None:
        metrics.TICK_FAILURES.inc()
        metrics.TICK_DURATION.labels("false").observe(seconds)
        return
    metrics.TICK_DURATION.labels("true" if report.leader else "false").observe(seconds)
    if not report.leader:
        return
    metrics.LEASE_RECOVERIES.labels("requeued").inc(report.requeued)
    metrics.LEASE_RECOVERIES.labels("lost").inc(report.lost)
    metrics.REPUBLISHED.inc(report.republished)
    metrics.SCHEDULES_FIRED.inc(report.fired)
    metrics.PROMOTED.inc(report.promoted)
