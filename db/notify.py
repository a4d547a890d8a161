"""Best-effort Redis pub/sub nudges for live listeners. Never raises: the database is the truth."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable

import redis

from anvil.settings import get_settings

log = logging.getLogger("anvil.notify")
_clients: dict[tuple[int, str], redis.Redis | None] = {}
# After a failure, skip nudges for a while: a Redis outage must not slow every database commit.
_quiet_until = 0.0


def client() -> redis.Redis | None:
    """A Redis client for the configured broker URL, or None when the broker is not Redis."""
    url = get_settings().redis_url
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = (
            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
            if url.startswith(("redis://", "rediss://", "unix://"))
            else None
        )
    return _clients[key]


def nudge(channels: Iterable[str]) -> None:
    global _quiet_until
    conn = client()
    if conn is None or time.monotonic() < _quiet_until:
        return
    try:
        with conn.pipeline(transaction=False) as pipe:
            for name in channels:
                pipe.publish(name, b"1")
            pipe.execute()
    except redis.RedisError as exc:
        _quiet_until = time.monotonic() + 5
        log.debug("event nudge failed (listeners fall back to polling): %s", exc)
