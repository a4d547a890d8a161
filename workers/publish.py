"""The one client of the broker: publishing "execution X is ready" on its priority queue (always
after the commit), and checking that the broker answers.

A failed publish is logged, not raised: the scheduler's reconciler publishes again any QUEUED
execution no worker has claimed, so the execution is delayed, never lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from anvil.domain.enums import Priority

log = logging.getLogger("anvil.publish")

_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def publish(execution_id: uuid.UUID, priority: str, producer: Any = None) -> bool:
    from workers.celery_app import RUN_TASK, app

    queue = Priority(priority).queue
    try:
        app.send_task(
            RUN_TASK,
            args=[str(execution_id)],
            queue=queue,
            routing_key=queue,
            retry=True,
            retry_policy=_RETRY,
            producer=producer,
        )
    except Exception as exc:  # the broker is only a signal; the reconciler covers for it
        log.warning("publish of %s failed, the reconciler will retry: %s", execution_id, exc)
        return False
    return True


def publish_many(items: Iterable[tuple[uuid.UUID, str]]) -> int:
    """Publish each; several share one producer (one pool checkout for a batch or a suite)."""
    items = list(items)
    if len(items) < 2:
        return sum(publish(execution_id, priority) for execution_id, priority in items)
    from workers.celery_app import app

    try:
        with app.producer_or_acquire() as producer:
            return sum(publish(execution_id, priority, producer) for execution_id, priority in items)
    except Exception as exc:  # the pool could not give a connection: the reconciler covers for it
        log.warning("publishing %d executions failed, the reconciler will retry: %s", len(items), exc)
        return 0


def broker_problem() -> str | None:
    """Why the broker cannot be reached right now, or None when it answers (for /readyz)."""
    from workers.celery_app import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
