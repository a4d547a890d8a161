"""kombu's Redis transport, with channels that fail like a lost connection once their transport is gone.

Why: when a worker loses Redis while it holds unacknowledged messages (a test is running), Celery 5.7
``collect()``s the broken connection, which detaches the connection's transport, and then
``close()``s it. kombu's Redis channel closes by first reading its pending BRPOP and deleting its
fanout bindings (the remote-control pidbox); with Redis down that fails during the collect and
leaves the channel half-closed. The close that follows restores its unacknowledged messages through a
new connection pool, whose parameters come from the detached transport: ``AttributeError:
'NoneType' object has no attribute 'hostname'``, which is no connection error, so Celery stops the
worker ("Unrecoverable error"). The same happens when a test that was running then finishes and its
message is acknowledged on that channel. Here that pool cannot be made and raises a connection
error, which Celery expects from a lost broker: it logs it and reconnects. Nothing is lost by
that: PostgreSQL, not the broker, says what still has to run.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = "workers.broker:Transport"
SCHEMES = ("redis", "rediss")


class Channel(redis.Channel):
    def _get_pool(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._get_pool(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel
