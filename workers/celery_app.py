"""The one Celery app, configured from Anvil's settings. Messages carry only an execution id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue

from anvil.domain.enums import QUEUES
from anvil.settings import Settings, get_settings
from workers import broker

RUN_TASK = "anvil.run_execution"


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    url = settings.redis_url
    options: dict[str, Any] = {
        # Consume queues strictly in the order given (critical first), not round-robin.
        "queue_order_strategy": "priority",
        # Above the longest allowed run, so a running message is never redelivered by Redis.
        "visibility_timeout": settings.visibility_timeout_s,
        **restore_sweep(settings.visibility_timeout_s),
        "socket_connect_timeout": 3,
        # A paused or stuck Redis accepts commands and answers none: a publish waits this long
        # (workers/publish.py: no retry), so the API still answers within 10 s (tests/faults).
        "socket_timeout": 3,
        "health_check_interval": 10,
    }
    if url.startswith("filesystem://"):
        folder = Path(url.removeprefix("filesystem://") or settings.data_dir / "broker").resolve()
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "queue_order_strategy": "priority",
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
        url = "filesystem://"
    return url, options


def restore_sweep(visibility_timeout_s: int) -> dict[str, int]:
    """How often a worker puts messages unacknowledged past the visibility timeout back in their queue.

    kombu sweeps every ``interval * throttle`` seconds, by default 100: fine for the default timeout
    (over an hour), but a short one would never be honoured. Sweep about five times per timeout,
    between every second and kombu's 100 s.
    """
    interval = max(1, min(10, visibility_timeout_s // 5))
    throttle = max(1, min(10, visibility_timeout_s // (5 * interval)))
    return {"unacked_restore_interval": interval, "unacked_restore_throttle": throttle}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    url, transport_options = broker_options(settings)
    # Imported by the worker at start-up: the tasks, its row in the worker registry, and the
    # cache of pytest's plugin bytecode it writes when ready.
    app = Celery(
        "anvil", broker=url, include=["workers.tasks", "workers.registry", "workers.plugin_bytecode"]
    )
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_default_queue="normal",
        task_create_missing_queues=False,
        broker_transport_options=transport_options,
        # Redis: kombu's transport with one fix, so a worker survives a Redis restart (workers/broker.py).
        broker_transport=broker.TRANSPORT if url.split("://", 1)[0] in broker.SCHEMES else None,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A broker blip must not kill running tests: their truth is in the database.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Task events cost a worker's main process about 5 ms per task, and only Flower reads them:
        # workers start without them, and Flower's `enable_events` broadcast (every 5 s while it
        # runs) turns them on. Worker events (heartbeats) stay on, so Flower lists workers at once
        # and the broadcast has a live event dispatcher to act on (anvil/cli/servers.py). Nothing
        # turns task events off when Flower stops: `celery -A workers.celery_app control
        # disable_events` does, or a restart.
        worker_send_task_events=False,
        # "task-sent" would come from the publishers (API, scheduler), which no broadcast reaches:
        # a second publish for every execution whether anyone watches or not. Flower shows a task
        # from its worker's "task-received" on; what waits in a queue is on its Broker page.
        task_send_sent_event=False,
        worker_concurrency=settings.worker_concurrency,
        beat_scheduler="scheduler.beat:AnvilScheduler",
        beat_max_loop_interval=settings.tick_interval_s,
        timezone="UTC",
    )
    return app


app = make_celery()
