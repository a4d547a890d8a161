"""The baseline of the benchmark: a no-op Celery task on Anvil's own Celery settings.

The worker runs as ``celery -A bench.noop worker`` with the same options as ``anvil worker``; each
task only counts itself in Redis (no result backend), so the bench can tell when all are done.
"""

from __future__ import annotations

import os

import redis

from workers.celery_app import make_celery

NOOP_TASK = "bench.noop"

app = make_celery()
_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One client per process: the prefork pool forks after import.
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["ANVIL_REDIS_URL"])
    return client


@app.task(name=NOOP_TASK, ignore_result=True)
def noop(counter_key: str) -> None:
    _redis().incr(counter_key)
