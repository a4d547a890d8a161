"""Publishing "execution X is ready" on its priority queue. Always after the commit.

A failed publish is logged, not raised: the scheduler's reconciler publishes again any QUEUED
execution no worker has claimed, so the execution is delayed, never lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from db.enums import Priority

log = logging.getLogger("anvil.publish")

_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def publish(execution_id: uuid.UUID, priority: str) -> bool:
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
        )
    except Exception as exc:  # the broker is only a signal; the reconciler covers for it
        log.warning("publish of %s failed, the reconciler will retry: %s", execution_id, exc)
        return False
    return True


def publish_many(items: Iterable[tuple[uuid.UUID, str]]) -> int:
    return sum(publish(execution_id, priority) for execution_id, priority in items)
